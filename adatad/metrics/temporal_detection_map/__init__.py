"""The `temporal_detection_map` metric; load it with `evaluate.load(adatad.evaluation.metric_path())`."""
