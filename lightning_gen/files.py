"""Files on disk and where they come from: writing every output atomically with the user's umask, the cache folder
of derived files, and a quick check that a download host is reachable."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

CACHE_ENV = "LIGHTNING_GEN_CACHE"


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


def cache_root() -> Path:
    """Where derived files go (decoded image folders, reference statistics): ``$LIGHTNING_GEN_CACHE``, else
    ``~/.cache/lightning_gen/cache``. Never the data root, which may be shared and read-only."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lightning_gen" / "cache").expanduser()


def online(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether ``host`` is reachable: a quick check so that offline machines fail in seconds, not at a timeout."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
