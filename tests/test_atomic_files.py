"""Atomic writes: a failure inside the block leaves the old file whole and no temporary file behind."""

import pytest

from crystaldos.atomic_files import atomic_write, write_text_atomic


def test_success_replaces_the_file_and_creates_missing_folders(tmp_path):
    path = tmp_path / "new" / "folder" / "table.csv"
    write_text_atomic(path, "a,b\n1,2\n")
    assert path.read_text() == "a,b\n1,2\n"
    write_text_atomic(path, "a,b\n3,4\n")
    assert path.read_text() == "a,b\n3,4\n"
    assert [p.name for p in path.parent.iterdir()] == ["table.csv"]


def test_failure_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old, complete")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_write(path) as tmp:
            tmp.write_text("new, half writ")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old, complete"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_failure_on_a_new_path_leaves_nothing(tmp_path):
    path = tmp_path / "part.nc"
    with pytest.raises(OSError):
        with atomic_write(path) as tmp:
            tmp.write_bytes(b"\x89HDF")
            raise OSError("disk full")
    assert not path.exists() and not list(tmp_path.iterdir())
