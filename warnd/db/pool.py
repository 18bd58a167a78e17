"""The one asyncpg pool of a warnd process, and where its URL comes from."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from warnd.core.errors import DatabaseError
from warnd.db import Conn
from warnd.db.migrate import migrate

SERVER_SETTINGS = {
    # So that the operator at 3 a.m. can tell warnd's sessions apart in pg_stat_activity.
    "application_name": "warnd",
    # warnd's statements are set-based over arrays (``unnest($1::bigint[])``). After five runs of
    # a prepared statement PostgreSQL may switch to a generic plan that guesses 10 rows per array
    # and joins 300 ids to the table by a nested loop: recording a batch of 300 sent messages took
    # 20 ms instead of 4. Planning each run with its real arrays costs well under a millisecond.
    "plan_cache_mode": "force_custom_plan",
}


async def _init_connection(conn: Conn) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(url: str, *, application_name: str | None = None) -> asyncpg.Connection:
    """A single connection with warnd's codecs (for LISTEN and long-held locks);
    ``application_name`` names it in pg_stat_activity instead of "warnd"."""
    settings = SERVER_SETTINGS
    if application_name is not None:
        settings = {**SERVER_SETTINGS, "application_name": application_name}
    try:
        conn: asyncpg.Connection = await asyncpg.connect(url, server_settings=settings)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL: {exc}") from exc
    await _init_connection(conn)
    return conn


@asynccontextmanager
async def open_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    run_migrations: bool = True,
    role: str | None = None,
) -> AsyncIterator[asyncpg.Pool]:
    """Open the pool (migrating first unless told not to) and close it on exit.

    ``role``: every connection acts as this role from its start (``warnd.db.roles``): the login
    must be a member of it, and the session cannot leave it (``RESET ROLE`` returns to it).
    """
    settings = {**SERVER_SETTINGS, "role": role} if role else SERVER_SETTINGS
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            server_settings=settings,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        if run_migrations:
            async with pool.acquire() as conn:
                await migrate(conn)
        yield pool
    finally:
        await pool.close()


def with_database(url: str, name: str) -> str:
    """The same server URL, pointing at another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def recreate_database(server_url: str, name: str, *, template: str | None = None) -> str:
    """Drop and create a database on the server (demo, benchmarks, tests); return its URL."""
    admin = await connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    return with_database(server_url, name)
