"""The registry's own storage, read-only (Distribution's filesystem driver layout).

`StorageLayout` reads tags, revisions, layer links and blobs straight from the
directory the filesystem driver's ``rootdirectory`` names; it never writes.
"""

from ._layout import Link, StorageLayout, StorageUnreadable

__all__ = ["Link", "StorageLayout", "StorageUnreadable"]
