import sys

from hydration.cli import main

sys.exit(main())
