import sys

from lightning_gen.cli import main

sys.exit(main())
