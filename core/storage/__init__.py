"""The registry's own storage, read-only (Distribution's filesystem driver layout).

`StorageLayout` reads tags, revisions, layer links and blobs straight from the
directory the filesystem driver's ``rootdirectory`` names; it never writes.
`StorageReader` is the scan source built on it: reads from the files, deletes and
re-checks through the registry's API.  Object-storage drivers (S3, GCS, Azure) are
not covered; a reader for one would offer the same methods as `StorageLayout`.
`preview_gc` tells what the registry's garbage-collect would free.
"""

from ._gc_preview import GcPreview, RepositoryGc, facts_references, preview_gc
from ._layout import Link, StorageLayout, StorageUnreadable
from ._reader import StorageReader

__all__ = [
    "GcPreview",
    "Link",
    "RepositoryGc",
    "StorageLayout",
    "StorageReader",
    "StorageUnreadable",
    "facts_references",
    "preview_gc",
]
