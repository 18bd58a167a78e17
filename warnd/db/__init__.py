"""PostgreSQL access: the embedded server, the pool, migrations and named SQL queries."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# Anything a query can run on: a plain connection or one borrowed from the pool.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy
