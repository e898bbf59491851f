import sys

from mtl_perception.cli import main

sys.exit(main())
