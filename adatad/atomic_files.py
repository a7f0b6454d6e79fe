"""Files written whole or not at all: every writer of the package goes through `write_text_atomically`.

Torch-free leaf module (evaluation, annotation tools, the command line and training all use it).
"""

import os
import tempfile
from pathlib import Path
from typing import Union


def write_text_atomically(path: Union[str, os.PathLike], text: str) -> Path:
    """Writes `text` (UTF-8, verbatim) to a temporary file in `path`'s folder and renames it over `path` when
    complete, so that an interrupted write (a kill, a full disk) leaves the previous file, or none, and never a
    truncated one. The folder must exist."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        # mkstemp creates the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:  # KeyboardInterrupt too: never leave the temporary file behind
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
