"""Build the static leaderboard page: ``python scripts/leaderboard.py --db results/leaderboard.sqlite``.

Same as ``python -m lightning_gen leaderboard``; see ``lightning_gen/leaderboard/dashboard.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lightning_gen.leaderboard import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
