"""regprune: plan, approve, delete and garbage-collect images in a private registry, safely."""

from .hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
__version__ = "0.1.0"
