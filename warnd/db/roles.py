"""The roles warnd's connections use: the owner migrates and replaces rosters, the runtime role
(``warnd_app``, migration 007) serves, and cannot rewrite history or change the schema."""

from __future__ import annotations

from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

from warnd.db import Conn

RUNTIME_ROLE: Final = "warnd_app"  # granted what serving needs, and nothing more
RUNTIME_LOGIN: Final = "warnd_runtime"  # the login the embedded server gives the daemon


async def ensure_runtime_login(owner: Conn) -> None:
    """Create the login role the embedded server's daemon connects as, if it is missing.

    A member of ``warnd_app`` and nothing else: no superuser, no ownership, no password (the
    embedded server listens on its own Unix socket only).
    """
    await owner.execute(
        f"""DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{RUNTIME_LOGIN}') THEN
                CREATE ROLE {RUNTIME_LOGIN} LOGIN IN ROLE {RUNTIME_ROLE};
            END IF;
        END
        $$"""
    )


def as_user(url: str, user: str) -> str:
    """The same server and database, logging in as ``user``."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user)}@{host}"))
