import sys

from repsearch.cli.main import main

sys.exit(main())
