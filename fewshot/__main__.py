"""``python -m fewshot``: the same command as ``python -m fewshot.bench``."""
from fewshot.cli import main

raise SystemExit(main())
