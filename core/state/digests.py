"""The digest cache (manifest facts by digest, kept forever: digests are immutable)
and the first-seen time of each digest in each repository."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..models import Blob, ManifestFacts
from ._codec import chunks, now, parse, to_db, unique
from .connection import Connection


class DigestCache:
    """Cached ``ManifestFacts`` and first-seen times (``state.digests``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get_facts(self, digests: Iterable[str]) -> dict[str, ManifestFacts]:
        """Cached facts for those of ``digests`` that are known (one query per 500)."""
        wanted = unique(digests)
        found: dict[str, ManifestFacts] = {}
        shared: dict[Blob, Blob] = {}  # equal blobs (a common base layer) held once
        for chunk in chunks(wanted):
            marks = ",".join("?" * len(chunk))
            for row in self._conn.rows(
                f"SELECT digest, facts FROM digests WHERE digest IN ({marks})", chunk
            ):
                try:
                    facts = ManifestFacts.from_json(row["facts"], shared)
                except (ValueError, TypeError, KeyError, AttributeError):
                    continue  # a damaged cache row is a cache miss: fetched again, then replaced
                if facts.digest == row["digest"]:
                    found[facts.digest] = facts
        return found

    def put_facts(self, facts: Iterable[ManifestFacts]) -> None:
        """Cache facts by digest, all in one transaction."""
        facts = list(facts)
        if not facts:
            return  # no write transaction (and no wait for the write lock) for nothing
        stamp = to_db(now())
        # A generator, not a list: the JSON of 100,000 facts is encoded row by row as
        # SQLite takes it, never held all at once.
        rows = ((f.digest, f.media_type, f.size, f.to_json(), stamp) for f in facts)
        with self._conn.write() as conn:
            conn.executemany(
                "INSERT INTO digests (digest, media_type, size, facts, cached_at)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (digest) DO UPDATE SET media_type = excluded.media_type,"
                " size = excluded.size, facts = excluded.facts, cached_at = excluded.cached_at",
                rows,
            )

    def touch_first_seen(
        self, registry: str, repository: str, digests: Iterable[str], now: datetime
    ) -> dict[str, datetime]:
        """Record ``now`` as first-seen time of digests never seen in this repository;
        return the first-seen time of every digest passed."""
        wanted = unique(digests)
        if not wanted:
            return {}
        stamp = to_db(now)
        result: dict[str, datetime] = {}
        with self._conn.write() as conn:
            # OR IGNORE keeps the earliest time: a digest's first sighting never moves.
            conn.executemany(
                "INSERT OR IGNORE INTO first_seen (registry, repository, digest, first_seen)"
                " VALUES (?, ?, ?, ?)",
                [(registry, repository, digest, stamp) for digest in wanted],
            )
            for chunk in chunks(wanted):
                marks = ",".join("?" * len(chunk))
                cursor = conn.execute(
                    "SELECT digest, first_seen FROM first_seen WHERE registry = ?"
                    f" AND repository = ? AND digest IN ({marks})",
                    [registry, repository, *chunk],
                )
                for digest, first_seen in cursor.fetchall():
                    result[digest] = parse(first_seen)
        return result
