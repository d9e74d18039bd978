import sys

from sepgconv_bench.cli import main

sys.exit(main())
