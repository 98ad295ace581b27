"""``python -m fewshot.bench``: the command line (its code is in :mod:`fewshot.cli`)."""
from fewshot.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
