"""The console's officers: adding one, signing in with a password (argon2id), the server-side
session that follows, and the lockout after repeated failures. Each sign-in, failure, lockout
and sign-out is in the audit log under the officer's name.

Machines (feeds, scripts) keep their bearer tokens from the config; people sign in here.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg
import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from warnd.app.services import Services
from warnd.core.config import Role
from warnd.core.errors import ConflictError, InputError, NotFoundError, RefusedError
from warnd.db.queries import sql

log = structlog.get_logger(__name__)

IDLE_TIMEOUT: Final = timedelta(minutes=30)  # a console left open on a desk signs itself out
MAX_FAILURES: Final = 5  # consecutive wrong passwords before the lockout
LOCKOUT: Final = timedelta(minutes=15)
MIN_PASSWORD: Final = 10
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_HASHER: Final = PasswordHasher()  # argon2id with the library's current recommended costs
# Verified against when the name is unknown, so that the answer takes as long either way and
# does not tell who has an account.
_DUMMY_HASH: Final = _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class ConsoleUser:
    """A signed-in officer."""

    name: str
    roles: frozenset[str]

    def has(self, role: Role) -> bool:
        """Admin holds every role."""
        return role.value in self.roles or Role.ADMIN.value in self.roles


@dataclass(frozen=True)
class Session:
    """A session just opened: the cookie's token (never stored) and its CSRF token."""

    token: str
    csrf_token: str
    user: ConsoleUser


@dataclass(frozen=True)
class LiveSession:
    user: ConsoleUser
    csrf_token: str


class SignInRefusedError(RefusedError):
    """A wrong name or password, or an officer locked out; says which only as far as is safe."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def parse_roles(text: str) -> list[str]:
    """``officer,approver`` as a sorted list of known roles; ``InputError`` naming a bad one."""
    roles = sorted({r.strip() for r in text.split(",") if r.strip()})
    known = {r.value for r in Role}
    bad = [r for r in roles if r not in known]
    if bad or not roles:
        raise InputError(
            f"roles: {', '.join(map(repr, bad)) or 'none given'}; use any of "
            f"{', '.join(sorted(known))}, separated by commas",
            code="invalid_user",
        )
    return roles


async def add_user(
    pool: asyncpg.Pool,
    name: str,
    roles: list[str],
    password: str,
    *,
    now: datetime,
    replace: bool = False,
) -> bool:
    """Add an officer (or, with ``replace``, set an existing one's password and roles).

    Returns True when the officer was created. ``InputError`` names a bad name or a short
    password; ``ConflictError`` says the name is taken (without ``replace``).
    """
    if not _NAME.fullmatch(name):
        raise InputError(
            f"name: {name!r} is not a valid user name (lower-case letters, digits, '-', '_')",
            code="invalid_user",
        )
    if len(password) < MIN_PASSWORD:
        raise InputError(
            f"password: at least {MIN_PASSWORD} characters are required", code="invalid_user"
        )
    hashed = await asyncio.to_thread(_HASHER.hash, password)
    async with pool.acquire() as conn, conn.transaction():
        created = await conn.fetchval(sql("insert_console_user"), name, hashed, roles, now)
        if created is None:
            if not replace:
                raise ConflictError("user_exists", f"user {name!r} exists already")
            await conn.fetchval(sql("set_console_password"), name, hashed, roles)
        await conn.execute(
            sql("audit"),
            "cli",
            "console_user_added" if created else "console_user_changed",
            f"user:{name}",
            {"roles": roles},
            now,
        )
    return created is not None


async def set_disabled(pool: asyncpg.Pool, name: str, *, disabled: bool, now: datetime) -> None:
    """Disable an officer (refused at sign-in, sessions ended) or enable them again; audited.
    ``NotFoundError`` when there is no such officer."""
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            sql("set_console_user_disabled"), name, now if disabled else None
        )
        if found is None:
            raise NotFoundError(f"no console user {name!r}")
        action = "console_user_disabled" if disabled else "console_user_enabled"
        await conn.execute(sql("audit"), "cli", action, f"user:{name}", {}, now)


async def list_users(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Every officer: name, roles, created_at, locked_until, disabled_at, last_seen."""
    return list(await pool.fetch(sql("console_users")))


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def sign_in(services: Services, name: str, password: str, *, remote: str) -> Session:
    """Check the password and open a session, or raise ``SignInRefusedError``; a failure counts
    toward the lockout, and the failure that reaches ``MAX_FAILURES`` locks the officer out for
    ``LOCKOUT``. A locked officer is refused whatever the password."""
    now = services.clock.now()
    row = await services.pool.fetchrow(sql("console_user"), name)
    if row is None:
        await asyncio.to_thread(_verify, _DUMMY_HASH, password)
        await _audit(services, name, "console_sign_in_failed", {"remote": remote}, now)
        raise SignInRefusedError("sign_in_failed", "用户名或密码错误")
    if row["locked_until"] is not None and row["locked_until"] > now:
        await _audit(services, name, "console_sign_in_locked", {"remote": remote}, now)
        raise _locked(row["locked_until"], services)
    if not await asyncio.to_thread(_verify, row["password_hash"], password):
        failed = await services.pool.fetchrow(
            sql("console_sign_in_failed"), name, MAX_FAILURES, now, LOCKOUT
        )
        assert failed is not None
        locked = failed["locked_until"] is not None and failed["locked_until"] > now
        action = "console_locked_out" if locked else "console_sign_in_failed"
        await _audit(services, name, action, {"remote": remote}, now)
        log.warning(action, user=name, remote=remote)
        if locked:
            raise _locked(failed["locked_until"], services)
        raise SignInRefusedError("sign_in_failed", "用户名或密码错误")
    if row["disabled_at"] is not None:
        await _audit(services, name, "console_sign_in_disabled", {"remote": remote}, now)
        raise SignInRefusedError("disabled", "该账户已停用，请联系管理员")
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    async with services.pool.acquire() as conn, conn.transaction():
        await conn.execute(sql("console_sign_in_succeeded"), name, token_digest(token), csrf, now)
        await conn.execute(
            sql("audit"), name, "console_signed_in", f"user:{name}", {"remote": remote}, now
        )
    log.info("console_signed_in", user=name)
    return Session(token, csrf, ConsoleUser(name, frozenset(row["roles"])))


def _locked(until: datetime, services: Services) -> SignInRefusedError:
    local = until.astimezone(services.current_policy().night.zone)
    return SignInRefusedError(
        "locked_out",
        f"连续{MAX_FAILURES}次密码错误，账户已锁定至 {local:%H:%M}，请稍后再试或联系管理员",
    )


async def session(services: Services, token: str) -> LiveSession | None:
    """The officer a session cookie belongs to, if the session is live; marks it seen."""
    now = services.clock.now()
    row = await services.pool.fetchrow(
        sql("console_session"), token_digest(token), now, now - IDLE_TIMEOUT
    )
    if row is None:
        return None
    return LiveSession(ConsoleUser(row["name"], frozenset(row["roles"])), row["csrf_token"])


async def still_live(services: Services, token: str) -> bool:
    """Whether the session is live, without counting this as the officer's activity."""
    since = services.clock.now() - IDLE_TIMEOUT
    return bool(
        await services.pool.fetchval(sql("console_session_live"), token_digest(token), since)
    )


async def sign_out(services: Services, token: str) -> None:
    now = services.clock.now()
    name = await services.pool.fetchval(sql("delete_console_session"), token_digest(token))
    if name is not None:
        await _audit(services, name, "console_signed_out", {}, now)
    await services.pool.execute(sql("delete_idle_console_sessions"), now - IDLE_TIMEOUT)


async def _audit(
    services: Services, name: str, action: str, detail: dict[str, object], now: datetime
) -> None:
    await services.pool.execute(sql("audit"), name, action, f"user:{name}", detail, now)
