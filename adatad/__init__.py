"""AdaTAD: end-to-end temporal action detection with Temporal-Informative Adapters, Hugging Face-native.

Attributes are imported lazily so that torch-free entry points (``adatad-eval``, annotation
indexing) start fast and never import torch or transformers.
"""

import importlib

__version__ = "0.1.0"

_LAZY_ATTRIBUTES = {
    "AdaTADConfig": "configuration_adatad",
    "AdaTADModel": "modeling_adatad",
    "AdaTADPreTrainedModel": "modeling_adatad",
    "AdaTADForTemporalDetection": "modeling_adatad",
    "AdaTADTemporalDetectionOutput": "modeling_adatad",
    "AdaTADVideoProcessor": "processing_adatad",
    "TemporalActionDetectionPipeline": "pipeline_adatad",
    "load_detection_pipeline": "pipeline_adatad",
}

__all__ = sorted(_LAZY_ATTRIBUTES)


def __getattr__(name):
    if name in _LAZY_ATTRIBUTES:
        module = importlib.import_module(f".{_LAZY_ATTRIBUTES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
