"""``python -m regprune.cli``."""

from . import main

main()
