"""Reading OpenTAD models: its config dicts and its checkpoints' key layout, mapped onto AdaTAD's.

Used by the parity tests and by `conversion_scripts/convert_opentad_to_adatad.py`. Pure tensor/dict code.
"""

# DETECTOR-KEYS-SECTION-END
