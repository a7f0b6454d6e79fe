"""`python -m adatad.presets [NAME [KEY=VALUE ...]]`: list the shipped presets, or print one after overrides."""

import sys

from . import main

sys.exit(main())
