"""Thin wrapper: ``python scripts/demo.py`` is what ``make demo`` runs (logic in lightning_gen/demo.py)."""

import sys

from lightning_gen.demo import main

sys.exit(main())
