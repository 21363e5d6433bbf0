"""Write files so that a kill at any moment leaves the old file or the whole new one, never a torn one.

Checkpoints, training states, data chunks, evaluation parts and download manifests are all read back
by resumable jobs that may have been killed mid-write (end of a session, a lent machine going back).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; rename it onto ``path`` when the block succeeds.

    The rename is atomic on POSIX (same folder, same file system). If the block raises, the temporary
    file is removed and ``path`` is left as it was. Missing parent folders are created.

    >>> with atomic_write("out/table.csv") as tmp:  # doctest: +SKIP
    ...     frame.to_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only still there if the block failed


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``Path.write_text``, atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)
