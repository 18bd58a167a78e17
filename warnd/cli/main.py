"""The ``warnd`` command line: run the daemon, the demo, migrations, rosters, warnings, benchmarks.

Errors a person can act on (bad config, bad input, no database) are printed as one clear line and
exit with status 1 or 2; they are never a traceback. The demo and the benchmarks are tools, not
part of the daemon: their commands come from the ``warnd.commands`` entry-point group, so nothing
in warnd imports them.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import entry_points

import click

from warnd.cli.drill import drill
from warnd.cli.eew import eew
from warnd.cli.errors import friendly_errors
from warnd.cli.officer import warning
from warnd.cli.report import report
from warnd.cli.roster import roster
from warnd.cli.users import user
from warnd.runtime.settings import Settings, database_url

COMMANDS_GROUP = "warnd.commands"


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
@click.option(
    "--roles",
    default="all",
    show_default=True,
    envvar="WARND_ROLES",
    help="What this process does, comma-separated: api, plan, dispatch, escalate, inbound "
    "(several processes may share a role; see the README).",
)
@friendly_errors
def run(simulate: bool, roles: str) -> None:
    """Run the daemon: HTTP API, planner, dispatch workers and timers (or some of them)."""
    from warnd.runtime.daemon import Daemon, tune_gc
    from warnd.runtime.roles import parse_roles

    daemon = Daemon(Settings(), simulate=simulate, roles=parse_roles(roles))
    tune_gc()
    asyncio.run(daemon.serve_forever())


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("migrate")
@friendly_errors
def db_migrate() -> None:
    """Apply the schema migrations this database lacks."""
    from warnd.db.migrate import migrate
    from warnd.db.pool import connect

    async def go() -> list[str]:
        conn = await connect(database_url(Settings()))
        try:
            return [f"{m.version:03d}_{m.name}" for m in await migrate(conn)]
        finally:
            await conn.close()

    applied = asyncio.run(go())
    click.echo("applied: " + ", ".join(applied) if applied else "the schema is up to date")


main.add_command(roster)
main.add_command(eew)
main.add_command(warning)
main.add_command(report)
main.add_command(drill)
main.add_command(user)
for entry in entry_points(group=COMMANDS_GROUP):
    main.add_command(entry.load(), entry.name)
