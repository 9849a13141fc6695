"""Writing files the way every output of the suite is written: atomically, with the user's umask."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file open for writing beside ``path``, renamed onto ``path`` when the block ends without error:
    readers never see half a file, and an error leaves no file behind.

    The temporary file is created with ``O_EXCL`` and mode 0666 less the umask. ``tempfile.mkstemp`` would create it
    0600, and ``os.replace`` keeps the mode, so every grid, cache and download would be private to its writer.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
