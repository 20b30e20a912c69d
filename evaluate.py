"""`python -m evaluate` from the repo root: the original project's command (= `emorec evaluate`)."""
import sys

from emorec.cli import main

if __name__ == "__main__":
    sys.argv = ["emorec", "evaluate", *sys.argv[1:]]
    sys.exit(main())
