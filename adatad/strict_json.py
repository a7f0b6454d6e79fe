"""JSON objects without repeated keys: an `object_pairs_hook` for `json.load` shared by every reader of annotation,
ground-truth and prediction files (standard library only)."""


class DuplicateJSONKeyError(ValueError):
    """A key repeated inside one JSON object (`key` holds it)."""

    def __init__(self, key):
        super().__init__(key)
        self.key = key


def object_without_duplicate_keys(pairs: list) -> dict:
    """`object_pairs_hook` for `json.load` that raises `DuplicateJSONKeyError` on a repeated key.

    `json.load` alone keeps the last of repeated keys, so a video id written twice would silently lose
    everything under its first copy.
    """
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        raise DuplicateJSONKeyError(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return result
