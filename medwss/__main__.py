"""`python -m medwss ...` (and `torchrun -m medwss embed ...`) run the command line."""

import sys

from medwss.cli.main import main

sys.exit(main())
