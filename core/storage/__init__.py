"""The registry's own storage, read-only (Distribution's filesystem driver layout).

`StorageLayout` reads tags, revisions, layer links and blobs straight from the
directory the filesystem driver's ``rootdirectory`` names; it never writes.
`StorageReader` is the scan source built on it: reads from the files, deletes and
re-checks through the registry's API.  Object-storage drivers (S3, GCS, Azure) are
not covered; a reader for one would offer the same methods as `StorageLayout`.
"""

from ._layout import Link, StorageLayout, StorageUnreadable
from ._reader import StorageReader

__all__ = ["Link", "StorageLayout", "StorageReader", "StorageUnreadable"]
