"""Thin wrapper: ``python scripts/benchmark.py CKPT ...`` is ``python -m lightning_gen benchmark CKPT ...``
(logic in lightning_gen/app/benchmark.py)."""

import sys

from lightning_gen.app.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
