import sys

from lightning_gen.app.cli import main

sys.exit(main())
