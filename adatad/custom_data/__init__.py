"""Your own dataset: read simple annotation files, check them, convert them to the layout the loaders read, and
suggest training settings from the data.

Input formats (all times in seconds):

- CSV (`.csv`) or JSON Lines (`.jsonl`) with one row per action instance and the columns / keys
  `video, start, end, label`, optionally `subset` (default "training"), `fps` and `duration`. `video` is the file
  name (`clip01.mp4`) or the file name without extension (`clip01`); the video id is always the name without
  extension. A row with `start`, `end` and `label` all empty declares a video without actions.
- ActivityNet-style JSON (`.json`): `{"database": {video_id: {"subset", "duration", "annotations":
  [{"segment": [start, end], "label": name}]}}}`, the layout `adatad.annotations.load_database_json` reads (`fps` and
  `frame` are used when present).
- A folder: the videos, plus exactly ONE annotation file of the formats above beside them.

Output (`convert_annotations`, `adatad-convert-annotations`): `annotations.json` in the `database` layout above with
`duration`, `fps` and `frame` filled in for every video (from the file, else probed from the video with the
project's decoders) and `category_idx.txt` (one class name per line, index = line number), the files every
training preset reads through `adatad.annotations.load_database_json`. Files are written under a temporary name in the
target folder and renamed when complete.

`validate_annotations` / `adatad-validate-data` check a dataset in any input format and report every problem with
counts and the first offending rows; `suggest_settings` / `adatad-suggest-preset` derive window size, snippet
stride, scale factor, FPN levels with regression ranges and `max_seq_len` from the segment and video lengths and
write a training preset.

Modules: `records` (the records, the problems and the report), `readers`, `validation`, `conversion`,
`preset_suggestion`, `cli` (the three command lines). The annotation side imports numpy and `datasets` only; torch
is imported only to decode videos.
"""

from .conversion import convert_annotations
from .preset_suggestion import SuggestedSettings, build_custom_preset, suggest_settings
from .readers import read_annotations
from .records import CustomAnnotations, CustomDataError, DataValidationError, ValidationReport
from .validation import check_annotations, check_training_data, probe_video, validate_annotations

__all__ = [
    "CustomAnnotations",
    "CustomDataError",
    "DataValidationError",
    "SuggestedSettings",
    "ValidationReport",
    "build_custom_preset",
    "check_annotations",
    "check_training_data",
    "convert_annotations",
    "probe_video",
    "read_annotations",
    "suggest_settings",
    "validate_annotations",
]
