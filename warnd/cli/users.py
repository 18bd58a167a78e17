"""The ``user`` command group: the officers who sign in to the console (``warnd user add``).

Passwords are typed at a prompt (twice, not echoed) or read from standard input for scripts
(``--password-stdin``); they never appear on the command line, where ``ps`` and the shell's
history would keep them.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import click

from warnd.cli.errors import friendly_errors


@click.group()
def user() -> None:
    """The officers who sign in to the console (值班台)."""


@user.command("add")
@click.argument("name")
@click.option(
    "--roles",
    default="officer",
    show_default=True,
    help="Comma-separated: officer (issue, cancel, record answers), approver (the second "
    "officer for orange and red), admin (everything).",
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
@click.option("--replace", is_flag=True, help="Set a new password and roles for an existing user.")
@friendly_errors
def add(name: str, roles: str, password_stdin: bool, replace: bool) -> None:
    """Add an officer who signs in to the console with NAME and a password."""
    from warnd.app.users import add_user, parse_roles
    from warnd.db.pool import open_pool
    from warnd.runtime.settings import Settings, database_url

    wanted = parse_roles(roles)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("密码 (password)", hide_input=True, confirmation_prompt=True)

    async def go() -> bool:
        async with open_pool(database_url(Settings()), min_size=1, max_size=1) as pool:
            return await add_user(
                pool, name, wanted, password, now=datetime.now(UTC), replace=replace
            )

    created = asyncio.run(go())
    click.echo(f"{'added' if created else 'changed'} user {name} ({', '.join(wanted)})")
