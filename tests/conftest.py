"""The fixtures every test module may ask for by name.

Test databases: one migrated template per session, a fresh clone of it per test. With
WARND_TEST_DATABASE_URL set (CI sets it to the machine's PostgreSQL 15) the tests use that
server; otherwise an embedded PostgreSQL in a temporary folder, as on a fresh machine.

On top of them: the default policy, the API application on its small roster, the seed roster
for a whole warnd, and an HTTP SMS gateway. What the fixtures are built from (and what tests
use directly) is in tests/fixtures.py.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from channels.base import ChannelConfig
from tests import seed
from tests.fixtures import Api, FakeSimulator, Gateway, seed_roster, serve_api
from warnd.db.embedded import embedded_url
from warnd.db.migrate import migrate
from warnd.db.pool import connect, open_pool, recreate_database, with_database
from warnd.policy.loader import load_policy
from warnd.policy.model import Policy
from warnd.runtime.settings import REPO_CONFIG_DIR


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of the server the tests use, pointing at its maintenance database."""
    configured = os.environ.get("WARND_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="warnd-test-") as tmp:
        yield embedded_url(Path(tmp))


@pytest.fixture(scope="session")
async def template_db(server_url: str) -> AsyncIterator[str]:
    """The name of a migrated template database, dropped at the end of the session."""
    name = f"warnd_tmpl_{uuid.uuid4().hex[:10]}"
    admin = await connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        conn = await connect(with_database(server_url, name))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


class Clones:
    """Fresh clones of the template, each made while the test before it runs.

    Cloning takes a few tenths of a second on a busy server, more than most tests: the next
    clone is made in the background as soon as one is taken, and a used one is dropped in the
    background too.
    """

    def __init__(self, server_url: str, template: str) -> None:
        self._server_url = server_url
        self._template = template
        self._ahead: asyncio.Task[str] | None = None
        self._drops: set[asyncio.Task[None]] = set()
        self._failed: list[asyncio.Task[None]] = []

    async def _create(self) -> str:
        name = f"warnd_t_{uuid.uuid4().hex[:12]}"
        await recreate_database(self._server_url, name, template=self._template)
        return name

    async def _drop(self, name: str) -> None:
        admin = await connect(self._server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def take(self) -> str:
        """The name of a fresh clone, for one test only."""
        ahead, self._ahead = self._ahead, None
        name = await (ahead or self._create())
        self._ahead = asyncio.create_task(self._create())
        return name

    def drop(self, name: str) -> None:
        """Drop a used clone, in the background."""
        task = asyncio.create_task(self._drop(name))
        self._drops.add(task)
        task.add_done_callback(self._dropped)

    def _dropped(self, task: asyncio.Task[None]) -> None:
        self._drops.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._failed.append(task)  # raised by close()

    async def close(self) -> None:
        """Drop the clone made ahead and wait for every drop; raise the first that failed."""
        if self._ahead is not None:
            self.drop(await self._ahead)
        await asyncio.gather(*self._drops)
        for task in self._failed:
            task.result()


@pytest.fixture(scope="session")
async def clones(server_url: str, template_db: str) -> AsyncIterator[Clones]:
    made = Clones(server_url, template_db)
    yield made
    await made.close()


@pytest.fixture
async def db_url(server_url: str, clones: Clones) -> AsyncIterator[str]:
    """A URL of a fresh database cloned from the template, dropped after the test."""
    name = await clones.take()
    yield with_database(server_url, name)
    clones.drop(name)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the fresh database (already migrated through the template)."""
    async with open_pool(db_url, run_migrations=False) as p:
        yield p


@pytest.fixture
async def seeded(db_url: str) -> AsyncIterator[str]:
    """The URL of a fresh database holding the seed roster (tests/seed.py)."""
    conn = await connect(db_url)
    try:
        await seed.seed(conn)
    finally:
        await conn.close()
    yield db_url


@pytest.fixture(scope="module")
def policy() -> Policy:
    """The default policy (config/policy.toml)."""
    return load_policy(REPO_CONFIG_DIR / "policy.toml")


@pytest.fixture
async def app(db_url: str, pool: asyncpg.Pool, policy: Policy) -> AsyncIterator[Api]:
    """The API on the small roster of tests/fixtures.py, with no channels."""
    await seed_roster(pool)
    async for api in serve_api(pool, policy, {}, database_url=db_url):
        yield api


@pytest.fixture
async def simulated_app(pool: asyncpg.Pool, policy: Policy) -> AsyncIterator[Api]:
    """The API with one simulated channel and an empty roster."""
    channel = FakeSimulator("sim", ChannelConfig(type="fake"))
    async for api in serve_api(pool, policy, {"sim": channel}):
        yield api


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    """An HTTP SMS gateway on 127.0.0.1 that accepts everything unless scripted otherwise."""
    peer = Gateway()
    peer.start()
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def speech_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One speech cache for the session: a text is spoken once, whatever test asks first."""
    return tmp_path_factory.mktemp("tts")
