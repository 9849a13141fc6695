"""Counter-based randomness: seeds that are pure functions of integers, so a run resumed at any step draws what the
uninterrupted run would have drawn, with no generator state to save (and none to gather across DDP ranks)."""

from __future__ import annotations

import hashlib
import os


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers; distinct tuples give unrelated seeds."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def run_seed() -> int:
    """The run's seed: the one ``seed_everything`` set (``PL_GLOBAL_SEED``, which DDP ranks inherit), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))
