"""Files written whole or not at all, and never over an input: every writer of the package goes through
`write_text_atomically`, and the commands check their output paths with `check_output_path` before any work.

Torch-free leaf module (evaluation, annotation tools, the command line and training all use it).
"""

import os
import re
import stat
import tempfile
from pathlib import Path
from collections.abc import Iterable

# The process's open files by name (/dev/stdout, /dev/fd/3, /proc/self/fd/1): links to whatever the shell opened,
# possibly a regular file that it holds open, so they are written through, never replaced.
_OPEN_FILE_NAME = re.compile(r"/dev/(stdout|stderr|fd/\d+)|/proc/[^/]+/fd/\d+")


def _is_stream(path: Path) -> bool:
    """Whether `path` is written straight into instead of replaced: a character device (`/dev/null`, a terminal), a
    FIFO, or a name of one of the process's open files."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or bool(_OPEN_FILE_NAME.fullmatch(os.path.abspath(path)))


def _refuse_special(path: Path, option: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        kind = "a block device" if stat.S_ISBLK(mode) else "a socket"
        raise OutputPathError(f"{option} '{path}' is {kind}, which is never written; choose a file path")


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Writes `text` (UTF-8, verbatim) to a temporary file in `path`'s folder, flushes it to disk and renames it over
    `path` when complete, so that an interrupted write (a kill, a full disk, a power cut) leaves the previous file, or
    none, and never a truncated one. A replaced file keeps its permission bits; a new one gets those of a plain
    `open()`. Character devices, FIFOs and the standard streams (`/dev/stdout`) are written into, never replaced;
    block devices and sockets are refused (`OutputPathError`). The folder must exist."""
    path = Path(path)
    _refuse_special(path, "output")
    if _is_stream(path):
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        return path
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            # On disk before the rename: otherwise a power cut after it can leave an empty file under the name.
            os.fsync(handle.fileno())
        # mkstemp creates the file private (0600).
        os.chmod(temporary, mode)
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


def check_not_an_input(
    option: str, output: str | os.PathLike, inputs: Iterable[tuple[str, str | os.PathLike]]
) -> Path:
    """Refuses `output` when it is one of `inputs` ((what, path) pairs, None paths skipped) in any spelling (symbolic
    links, `..`, hard links); creates nothing.

    Raises:
        OutputPathError: naming the option, the path and the input.
    """
    target = Path(output)
    for what, source in inputs:
        if source is not None and _same_file(target, Path(source)):
            raise OutputPathError(
                f"{option} '{output}' is the {what} file '{source}', which writing would destroy; "
                "choose another output path"
            )
    return target


def check_output_path(
    option: str, output: str | os.PathLike, inputs: Iterable[tuple[str, str | os.PathLike]]
) -> Path:
    """Refuses `output` (given as `option`, e.g. "--output") when it is one of `inputs` ((what, path) pairs; any
    spelling: symbolic links, `..`, hard links), a folder, a block device or socket, or where no file can be created;
    creates its folder. Call it before the work, so that a typo fails at once and an input is never replaced. A
    character device, FIFO or standard stream (written into, see `write_text_atomically`) must be writable.

    Raises:
        OutputPathError: naming the option, the path and what to do.
    """
    target = check_not_an_input(option, output, inputs)
    if target.is_dir():
        raise OutputPathError(f"{option} '{output}' is a folder; give a file path")
    _refuse_special(target, option)
    if _is_stream(target):
        if not os.access(target, os.W_OK):
            raise OutputPathError(f"cannot write {option} '{output}': permission denied; choose a writable location")
        return target
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
