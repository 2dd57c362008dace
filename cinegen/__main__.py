"""`python -m cinegen ...` and `torchrun -m cinegen train ...` run the CLI."""

import sys

from cinegen.cli import main

sys.exit(main())
