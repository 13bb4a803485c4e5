"""Tests for core/atomic.py: a file is replaced whole or not at all, whatever happens inside the block."""

import pytest

from core.atomic import atomic_write, remove_file, temp_path


def test_temp_path_is_the_name_plus_tmp_beside_it(tmp_path):
    assert temp_path(tmp_path / "ckpt.pt") == tmp_path / "ckpt.pt.tmp"
    assert temp_path("out/metrics.jsonl").as_posix() == "out/metrics.jsonl.tmp"


def test_a_new_file_appears_whole_and_no_temp_file_stays(tmp_path):
    path = tmp_path / "meta.json"
    with atomic_write(path) as f:
        f.write('{"vocab_size": 65}\n')
        assert not path.exists()  # nothing at the final name until the block ends
        assert temp_path(path).exists()
    assert path.read_text() == '{"vocab_size": 65}\n'
    assert not temp_path(path).exists()


def test_replaces_an_existing_file(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text("old contents, longer than the new ones\n")
    with atomic_write(path) as f:
        f.write("new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_text_mode_writes_utf8(tmp_path):
    path = tmp_path / "names.txt"
    with atomic_write(path) as f:
        f.write("naïve café ∑\n")
    assert path.read_bytes() == "naïve café ∑\n".encode()


def test_binary_mode_writes_the_bytes_unchanged(tmp_path):
    path = tmp_path / "train.bin"
    data = bytes(range(256)) + b"\r\n\n\r"
    with atomic_write(path, "wb") as f:
        f.write(data)
    assert path.read_bytes() == data


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_error_in_the_block_leaves_the_old_file_and_removes_the_temp_file(tmp_path, error):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"old checkpoint")
    with pytest.raises(type(error)):
        with atomic_write(path, "wb") as f:
            f.write(b"half of a new che")
            raise error
    assert path.read_bytes() == b"old checkpoint"
    assert not temp_path(path).exists()


def test_an_error_in_the_block_creates_nothing_when_there_was_no_file(tmp_path):
    path = tmp_path / "meta.json"
    with pytest.raises(ValueError):
        with atomic_write(path) as f:
            f.write("{")
            raise ValueError("cannot serialise")
    assert list(tmp_path.iterdir()) == []


def test_a_stale_temp_file_from_a_crash_does_not_leak_into_the_new_file(tmp_path):
    path = tmp_path / "meta.json"
    temp_path(path).write_text("left by a killed process, much longer than what comes next\n")
    with atomic_write(path) as f:
        f.write("fresh\n")
    assert path.read_text() == "fresh\n"
    assert not temp_path(path).exists()


def test_a_missing_folder_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_write(tmp_path / "nowhere" / "file.txt") as f:
            f.write("x")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_leaves_the_old_file_and_removes_the_temp_file(tmp_path):
    # a folder in the way makes os.replace fail after the temp file is written
    path = tmp_path / "out"
    (path / "inside").mkdir(parents=True)
    with pytest.raises(OSError):
        with atomic_write(path) as f:
            f.write("contents")
    assert (path / "inside").is_dir()
    assert not temp_path(path).exists()


def test_remove_file_removes_a_file_and_says_so(tmp_path):
    path = tmp_path / "a.tmp"
    path.write_text("x")
    assert remove_file(path) is True
    assert not path.exists()
    assert remove_file(path) is False  # already gone: no error


def test_remove_file_removes_a_link_but_not_its_target(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("keep me")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert remove_file(link) is True
    assert not link.is_symlink() and target.read_text() == "keep me"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "missing")
    assert remove_file(dangling) is True
    assert not dangling.is_symlink()


def test_remove_file_never_removes_a_folder(tmp_path):
    folder = tmp_path / "ckpt.pt.tmp"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "file").write_text("someone else's")
    assert remove_file(folder) is False
    assert (folder / "data" / "file").read_text() == "someone else's"
