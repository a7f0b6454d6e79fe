"""AdaTAD: end-to-end temporal action detection with Temporal-Informative Adapters, Hugging Face-native.

Attributes are imported lazily so that torch-free entry points (``adatad-eval``, annotation
indexing) start fast and never import torch or transformers.

Importing the package registers the ``temporal-action-detection`` pipeline task with transformers: right away when
``transformers.pipelines`` is already loaded, else as soon as it is (an import hook), so that
``import adatad; pipeline("temporal-action-detection", model=...)`` works without importing torch here.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_LAZY_ATTRIBUTES = {
    "AdaTADConfig": "configuration_adatad",
    "AdaTADModel": "modeling_adatad",
    "AdaTADPreTrainedModel": "modeling_adatad",
    "AdaTADForTemporalDetection": "modeling_adatad",
    "AdaTADTemporalDetectionOutput": "modeling_adatad",
    "AdaTADVideoProcessor": "processing_adatad",
    "PostProcessingSettings": "post_processing",
    "TemporalActionDetectionPipeline": "pipeline_adatad",
    "load_detection_pipeline": "pipeline_adatad",
}

__all__ = sorted(_LAZY_ATTRIBUTES)


def __getattr__(name):
    if name in _LAZY_ATTRIBUTES:
        module = importlib.import_module(f".{_LAZY_ATTRIBUTES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_PIPELINES_MODULE = "transformers.pipelines"


class _RegisterTaskWhenPipelinesLoad(importlib.abc.MetaPathFinder):
    """Imports `adatad.pipeline_adatad` (which registers the task) right after `transformers.pipelines` loads."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _PIPELINES_MODULE:
            return None
        sys.meta_path.remove(self)  # one use; lets the other finders locate the real module
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            importlib.import_module(".pipeline_adatad", __name__)

        spec.loader.exec_module = exec_module
        return spec


if _PIPELINES_MODULE in sys.modules:
    importlib.import_module(".pipeline_adatad", __name__)
elif not any(isinstance(finder, _RegisterTaskWhenPipelinesLoad) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterTaskWhenPipelinesLoad())
