"""The role warnd serves as (issue 15): it can do its work, and cannot rewrite history, change
the schema or switch off the append-only triggers, even if told to by a bug or an attacker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from warnd.db.pool import connect, open_pool
from warnd.db.roles import RUNTIME_LOGIN, RUNTIME_ROLE, as_user, ensure_runtime_login

REFUSED = (asyncpg.InsufficientPrivilegeError, asyncpg.RaiseError)


@pytest.fixture(params=["owner login acting as warnd_app", "runtime login"])
async def runtime(db_url: str, request: pytest.FixtureRequest) -> AsyncIterator[asyncpg.Pool]:
    """A pool as the daemon opens it: the owner's login in role warnd_app (a configured server
    without WARND_RUNTIME_DATABASE_URL), or the login the embedded server creates."""
    url = db_url
    if request.param == "runtime login":
        owner = await connect(db_url)
        try:
            await ensure_runtime_login(owner)
        finally:
            await owner.close()
        url = as_user(db_url, RUNTIME_LOGIN)
    async with open_pool(
        url, min_size=1, max_size=2, run_migrations=False, role=RUNTIME_ROLE
    ) as pool:
        yield pool


async def history(pool: asyncpg.Pool) -> None:
    """A call-out with one event, and an audit entry, as serving writes them."""
    await pool.execute(
        "INSERT INTO audit_log (actor, action, subject, detail) VALUES ('zhang', 'x', 'y', '{}')"
    )
    await pool.execute(
        "INSERT INTO callout_events (callout_id, at, kind, actor, detail) "
        "VALUES (1, now(), 'opened', 'system', '{}')"
    )


@pytest.mark.parametrize(
    "attack",
    [
        "UPDATE audit_log SET actor = 'nobody'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "DELETE FROM callout_events",
        "UPDATE callout_events SET kind = 'acknowledged'",
        "TRUNCATE callout_events",
        "DELETE FROM field_task_events",
        "DELETE FROM callouts",
        "DELETE FROM deliveries",
        "DELETE FROM warnings",
        "TRUNCATE deliveries",
        "ALTER TABLE audit_log DISABLE TRIGGER USER",
        "ALTER TABLE callout_events DISABLE TRIGGER ALL",
        "SET session_replication_role = replica",
        "DROP TABLE callout_events",
        "CREATE TABLE shadow (id int)",
        "UPDATE schema_migrations SET checksum = 'x'",
    ],
)
async def test_the_runtime_role_cannot_rewrite_history(runtime: asyncpg.Pool, attack: str) -> None:
    await history(runtime)
    with pytest.raises(REFUSED):
        await runtime.execute(attack)
    assert await runtime.fetchval("SELECT count(*) FROM audit_log") == 1
    assert await runtime.fetchval("SELECT count(*) FROM callout_events") == 1


async def test_the_runtime_login_cannot_become_the_owner(db_url: str) -> None:
    """Only a login of its own keeps a compromised process from SET ROLE to the owner: the
    embedded server gives the daemon one, and a configured server should
    (WARND_RUNTIME_DATABASE_URL); the owner's login acting as warnd_app may switch back."""
    owner = await connect(db_url)
    try:
        await ensure_runtime_login(owner)
        superuser = await owner.fetchval("SELECT current_user")
    finally:
        await owner.close()
    url = as_user(db_url, RUNTIME_LOGIN)
    async with open_pool(
        url, min_size=1, max_size=1, run_migrations=False, role=RUNTIME_ROLE
    ) as pool:
        with pytest.raises(REFUSED):
            await pool.execute(f'SET ROLE "{superuser}"')


async def test_reset_role_does_not_leave_the_runtime_role(runtime: asyncpg.Pool) -> None:
    async with runtime.acquire() as conn:
        await conn.execute("RESET ROLE")
        assert await conn.fetchval("SELECT current_user") in (RUNTIME_ROLE, RUNTIME_LOGIN)
        with pytest.raises(REFUSED):
            await conn.execute("DELETE FROM audit_log")


async def test_every_table_is_granted_to_the_runtime_role(pool: asyncpg.Pool) -> None:
    """A table a later migration adds without grants would fail only when served: fail here."""
    missing = await pool.fetch(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'r'
              AND NOT has_table_privilege($1, c.oid, 'SELECT')""",
        RUNTIME_ROLE,
    )
    assert [r["relname"] for r in missing] == []
    writable_history = await pool.fetch(
        """SELECT c.relname FROM pg_class c
            WHERE c.relname IN ('audit_log', 'callout_events', 'field_task_events')
              AND (has_table_privilege($1, c.oid, 'UPDATE')
                   OR has_table_privilege($1, c.oid, 'DELETE')
                   OR has_table_privilege($1, c.oid, 'TRUNCATE'))""",
        RUNTIME_ROLE,
    )
    assert [r["relname"] for r in writable_history] == []
