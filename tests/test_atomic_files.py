import os
import stat
from pathlib import Path

import pytest

from adatad.atomic_files import write_text_atomically


def test_writes_the_text_verbatim_with_the_permissions_of_a_plain_open(tmp_path):
    path = write_text_atomically(tmp_path / "out.csv", "a,b\r\nc,d\r\n")
    assert path.read_bytes() == b"a,b\r\nc,d\r\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_an_interrupted_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("previous")
    with pytest.raises(TypeError):
        write_text_atomically(path, 12345)  # not text: fails while writing the temporary file
    assert path.read_text() == "previous"

    def interrupted(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomically(path, "new")
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_missing_folder_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_text_atomically(tmp_path / "missing" / "out.json", "{}")
    assert not (tmp_path / "missing").exists()


def test_check_output_path_refuses_an_input_in_any_spelling_and_a_folder(tmp_path):
    from adatad.atomic_files import OutputPathError, check_output_path

    source = tmp_path / "gt.json"
    source.write_text("{}")
    (tmp_path / "hard.json").hardlink_to(source)
    for spelling in (source, tmp_path / "sub" / ".." / "gt.json", tmp_path / "hard.json"):
        with pytest.raises(OutputPathError, match=r"--output '.*' is the ground-truth file"):
            check_output_path("--output", spelling, [("ground-truth", source)])
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_path("--output", tmp_path, [])
    target = check_output_path("--output", tmp_path / "new" / "metrics.json", [("ground-truth", source)])
    assert target.parent.is_dir() and not target.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == []


def test_a_fifo_is_written_into_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    # A reader opened before the write (non-blocking: it needs no writer yet), so the writer's open does not block.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_text_atomically(fifo, '{"mAP": 0.5}')
        received = os.read(reader, 1024)
    finally:
        os.close(reader)
    assert received == b'{"mAP": 0.5}'
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["results.fifo"]


def test_a_character_device_and_the_standard_stream_names_are_written_into(tmp_path):
    # A pseudo-terminal is a character device the test owns (a failure cannot replace a system device: nothing can
    # be created in /dev/pts or /dev/fd).
    master, terminal = os.openpty()
    try:
        device = os.ttyname(terminal)
        write_text_atomically(device, "to the terminal")
        assert os.read(master, 1024).replace(b"\r", b"") == b"to the terminal"
        assert stat.S_ISCHR(os.stat(device).st_mode)
    finally:
        os.close(master)
        os.close(terminal)
    # /dev/fd/N pointing at a regular file the caller holds open (as `> file` gives /dev/stdout): written through.
    path = tmp_path / "redirected.json"
    with open(path, "w") as held:
        write_text_atomically(f"/dev/fd/{held.fileno()}", "through the descriptor")
    assert path.read_text() == "through the descriptor"
    assert [p.name for p in tmp_path.iterdir()] == ["redirected.json"]


def test_check_output_path_accepts_devices_and_refuses_sockets(tmp_path):
    import socket

    from adatad.atomic_files import OutputPathError, check_output_path

    master, terminal = os.openpty()
    try:
        assert check_output_path("--output", os.ttyname(terminal), []) == Path(os.ttyname(terminal))
    finally:
        os.close(master)
        os.close(terminal)
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tmp_path / "listening.sock"))
        with pytest.raises(OutputPathError, match=r"--output '.*listening.sock' is a socket"):
            check_output_path("--output", tmp_path / "listening.sock", [])
    finally:
        server.close()


@pytest.mark.parametrize("mode", [0o600, 0o750])
def test_a_replaced_file_keeps_its_permission_bits(tmp_path, mode):
    path = tmp_path / "results.json"
    path.write_text("previous")
    path.chmod(mode)
    write_text_atomically(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_the_text_is_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source, target):
        events.append(("replace", str(source)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_text_atomically(tmp_path / "out.json", "{}")
    assert [kind for kind, _ in events] == ["fsync", "replace"]
    assert events[0][1] == events[1][1]  # the temporary file itself was flushed
