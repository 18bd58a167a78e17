"""Numbered schema migrations (``migrations/NNN_name.sql``), applied in order, each exactly once."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from warnd.core.errors import DatabaseError
from warnd.db import Conn

MIGRATION_LOCK = 0x77A2_D001  # advisory lock: two processes starting together migrate once


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    """The migrations shipped with this version of warnd, in order."""
    found = []
    for entry in resources.files("warnd.db").joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d{3})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def declared_schema() -> str:
    """The schema the migrations build, written as one document for readers (``schema.sql``).

    warnd never applies it: databases are built by the migrations alone, and a test proves they
    build exactly this.
    """
    return resources.files("warnd.db").joinpath("schema.sql").read_text("utf-8")


async def migrate(conn: Conn) -> list[Migration]:
    """Apply the migrations this database lacks; return those applied."""
    applied: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for migration in available():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise DatabaseError(
                        f"migration {migration.version:03d}_{migration.name}.sql was changed "
                        "after it was applied to this database; applied migrations never change: "
                        "put the change in a new numbered migration"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied
