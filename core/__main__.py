"""``python -m regprune``."""

from .cli import main

main()
