"""Files written whole or not at all, and never over an input: every writer of the package goes through
`write_text_atomically`, and the commands check their output paths with `check_output_path` before any work.

Torch-free leaf module (evaluation, annotation tools, the command line and training all use it).
"""

import os
import tempfile
from pathlib import Path
from collections.abc import Iterable


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
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


class OutputPathError(ValueError):
    """An output path that is an input, a folder, or a place that cannot be written."""


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_output_path(
    option: str, output: str | os.PathLike, inputs: Iterable[tuple[str, str | os.PathLike]]
) -> Path:
    """Refuses `output` (given as `option`, e.g. "--output") when it is one of `inputs` ((what, path) pairs; any
    spelling: symbolic links, `..`, hard links), a folder, or where no file can be created; creates its folder. Call
    it before the work, so that a typo fails at once and an input is never replaced.

    Raises:
        OutputPathError: naming the option, the path and what to do.
    """
    target = Path(output)
    for what, source in inputs:
        if _same_file(target, Path(source)):
            raise OutputPathError(
                f"{option} '{output}' is the {what} file '{source}', which writing would destroy; "
                "choose another output path"
            )
    if target.is_dir():
        raise OutputPathError(f"{option} '{output}' is a folder; give a file path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".check"):
            pass
    except OSError as error:
        raise OutputPathError(
            f"cannot write {option} '{output}': its folder cannot be written ({error.strerror or error}); "
            "choose a writable location"
        ) from None
    return target
