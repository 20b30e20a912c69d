"""`python -m train` from the repo root: the original project's command (= `emorec train`)."""
import sys

from emorec.cli import main

if __name__ == "__main__":
    sys.argv = ["emorec", "train", *sys.argv[1:]]
    sys.exit(main())
