"""Test databases: one migrated template per session, a fresh clone of it per test.

With WARND_TEST_DATABASE_URL set (CI sets it to the machine's PostgreSQL 15) the tests use that
server; otherwise an embedded PostgreSQL in a temporary folder, as on a fresh machine.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from warnd.db.embedded import embedded_url
from warnd.db.migrate import migrate
from warnd.db.pool import connect, open_pool, recreate_database, with_database


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of the server the tests use, pointing at its maintenance database."""
    configured = os.environ.get("WARND_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="warnd-test-") as tmp:
        yield embedded_url(Path(tmp))


@pytest.fixture(scope="session")
async def template_db(server_url: str) -> AsyncIterator[str]:
    """The name of a migrated template database, dropped at the end of the session."""
    name = f"warnd_tmpl_{uuid.uuid4().hex[:10]}"
    admin = await connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await connect(with_database(server_url, name))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def db_url(server_url: str, template_db: str) -> AsyncIterator[str]:
    """A URL of a fresh database cloned from the template, dropped after the test."""
    name = f"warnd_t_{uuid.uuid4().hex[:12]}"
    yield await recreate_database(server_url, name, template=template_db)
    admin = await connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the fresh database (already migrated through the template)."""
    async with open_pool(db_url, run_migrations=False) as p:
        yield p
