"""The ``warnd`` command line: run the daemon, the demo, migrations, rosters, warnings, benchmarks.

Errors a person can act on (bad config, bad input, no database) are printed as one clear line and
exit with status 1 or 2; they are never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console

from warnd.core.errors import WarndError
from warnd.runtime.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")

err_console = Console(stderr=True)


def friendly_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn warnd's own errors into one readable line and exit status 2."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except WarndError as exc:
            err_console.print(f"[bold red]warnd:[/] {exc}")
            sys.exit(2)

    return wrapper


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@click.group()
@click.option("--log-level", default=None, help="debug, info, warning or error")
def main(log_level: str | None) -> None:
    """warnd — warning dissemination and call-and-respond (叫应) for Jining."""
    from warnd.runtime.logs import configure

    configure(log_level or Settings().log_level)


@main.command()
@click.option(
    "--simulate", is_flag=True, help="Use simulated phones and speakers (no real channel)."
)
@friendly_errors
def run(simulate: bool) -> None:
    """Run the daemon: HTTP API, planner and dispatch workers."""
    from warnd.runtime.daemon import Daemon, tune_gc

    daemon = Daemon(Settings(), simulate=simulate)
    tune_gc()
    run_async(daemon.serve_forever())


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("migrate")
@friendly_errors
def db_migrate() -> None:
    """Apply the schema migrations this database lacks."""
    from warnd.db.migrate import migrate
    from warnd.db.pool import connect, database_url

    async def go() -> list[str]:
        conn = await connect(database_url(Settings()))
        try:
            return [f"{m.version:03d}_{m.name}" for m in await migrate(conn)]
        finally:
            await conn.close()

    applied = run_async(go())
    click.echo("applied: " + ", ".join(applied) if applied else "the schema is up to date")


def _attach_optional_groups() -> None:
    from warnd.cli.officer import warning
    from warnd.cli.roster import roster
    from warnd.tools.bench_callouts import acks_command, escalation_command
    from warnd.tools.bench_fanout import bench
    from warnd.tools.bench_sms import sms
    from warnd.tools.demo import demo

    for command in (acks_command, escalation_command, sms):
        bench.add_command(command)
    main.add_command(roster)
    main.add_command(warning)
    main.add_command(demo)
    main.add_command(bench)


_attach_optional_groups()
