import sys

from deplodock_dagster.cli import main

sys.exit(main())
