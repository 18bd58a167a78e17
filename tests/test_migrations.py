"""Migrations build the declared schema, and running them again changes nothing."""

from __future__ import annotations

import asyncpg
import pytest

from warnd.core.errors import DatabaseError
from warnd.db.migrate import available, migrate
from warnd.db.pool import connect

DECLARED_TABLES = {
    "schema_migrations",
    "divisions",
    "responders",
    "households",
    "special_persons",
    "facilities",
    "warnings",
    "rejected_messages",
    "warning_villages",
    "messages",
    "deliveries",
    "inbound_events",
    "speakers",
    "speaker_alarms",
    "reply_counts",
    "audit_log",
    "feed_health",
    "callouts",
    "callout_events",
    "field_tasks",
    "field_task_events",
    "eew_reports",
    "blind_drills",
    "console_users",
    "console_sessions",
    "delivery_tallies",
    "delivery_tally_changes",
}


async def _schema(conn: asyncpg.Connection) -> list[tuple[str, str, str, str]]:
    rows = await conn.fetch(
        """SELECT table_name, column_name, data_type, is_nullable
             FROM information_schema.columns WHERE table_schema = 'public'
            ORDER BY table_name, column_name"""
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def test_migrated_template_has_every_declared_table(db_url: str) -> None:
    conn = await connect(db_url)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert tables == DECLARED_TABLES
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        assert versions == [m.version for m in available()]
    finally:
        await conn.close()


async def test_migrate_again_is_a_no_op(db_url: str) -> None:
    conn = await connect(db_url)
    try:
        before = await _schema(conn)
        assert await migrate(conn) == []
        assert await _schema(conn) == before
    finally:
        await conn.close()


async def test_audit_log_refuses_update_and_delete(db_url: str) -> None:
    conn = await connect(db_url)
    try:
        await conn.execute("INSERT INTO audit_log (actor, action) VALUES ('t', 'x')")
        for statement in ("UPDATE audit_log SET actor = 'y'", "DELETE FROM audit_log"):
            try:
                await conn.execute(statement)
            except asyncpg.RaiseError as exc:
                assert "append-only" in str(exc)
            else:
                raise AssertionError(f"{statement} was allowed")
        assert await conn.fetchval("SELECT actor FROM audit_log") == "t"
    finally:
        await conn.close()


async def test_an_applied_migration_that_changed_is_refused(db_url: str) -> None:
    conn = await connect(db_url)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(DatabaseError, match="applied migrations never change"):
            await migrate(conn)
    finally:
        await conn.close()
