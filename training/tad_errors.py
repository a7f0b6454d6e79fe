"""The error of `training/run_tad.py` and its support modules for a run that cannot start or go on because of what it
was given (preset, data, flags, checkpoints)."""


class RunError(Exception):
    """A run that cannot start or go on because of what it was given; `run_tad.main` prints the message as one
    line."""
