"""The ``user`` command group: the officers who sign in to the console (``warnd user add``).

Passwords are typed at a prompt (twice, not echoed) or read from standard input for scripts
(``--password-stdin``); they never appear on the command line, where ``ps`` and the shell's
history would keep them.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

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


@user.command("list")
@friendly_errors
def list_command() -> None:
    """The console's officers: roles, when added, last seen, locked or disabled."""
    from rich.console import Console
    from rich.table import Table

    from warnd.app.users import list_users
    from warnd.db.pool import open_pool
    from warnd.runtime.settings import Settings, database_url

    async def go() -> list[Any]:
        async with open_pool(database_url(Settings()), min_size=1, max_size=1) as pool:
            return await list_users(pool)

    rows = asyncio.run(go())
    table = Table(title=f"值班台账户 (console users): {len(rows)}")
    for header in ("账户 name", "角色 roles", "添加 added", "最近活动 last seen", "状态 state"):
        table.add_column(header)
    now = datetime.now(UTC)
    for r in rows:
        if r["disabled_at"] is not None:
            state = f"停用 disabled {_local(r['disabled_at'])}"
        elif r["locked_until"] is not None and r["locked_until"] > now:
            state = f"锁定至 locked until {_local(r['locked_until'])}"
        else:
            state = "正常 active"
        last = _local(r["last_seen"]) if r["last_seen"] is not None else "—"
        table.add_row(r["name"], ", ".join(r["roles"]), _local(r["created_at"]), last, state)
    Console().print(table)


def _local(at: datetime) -> str:
    return at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")


@user.command("disable")
@click.argument("name")
@friendly_errors
def disable(name: str) -> None:
    """Disable NAME: refused at sign-in from now on, signed out at once (kept for the audit
    log; `warnd user enable NAME` undoes it)."""
    _set_disabled(name, disabled=True)
    click.echo(f"disabled user {name}; their sessions have ended")


@user.command("enable")
@click.argument("name")
@friendly_errors
def enable(name: str) -> None:
    """Enable a disabled NAME again (and clear a lockout)."""
    _set_disabled(name, disabled=False)
    click.echo(f"enabled user {name}")


def _set_disabled(name: str, *, disabled: bool) -> None:
    from warnd.app.users import set_disabled
    from warnd.db.pool import open_pool
    from warnd.runtime.settings import Settings, database_url

    async def go() -> None:
        async with open_pool(database_url(Settings()), min_size=1, max_size=1) as pool:
            await set_disabled(pool, name, disabled=disabled, now=datetime.now(UTC))

    asyncio.run(go())
