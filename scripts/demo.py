"""Thin wrapper: ``python scripts/demo.py`` is what ``make demo`` runs (logic in lightning_gen/app/demo.py)."""

import sys

from lightning_gen.app.demo import main

sys.exit(main())
