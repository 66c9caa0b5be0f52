import sys

from birdclef_bench.experiments import main

sys.exit(main())
