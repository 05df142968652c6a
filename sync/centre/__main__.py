import sys

from sync.centre.cli import main

sys.exit(main())
