import sys

from signseg_core.cli.main import main

sys.exit(main())
