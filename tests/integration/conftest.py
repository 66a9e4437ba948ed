"""Fixtures for integration tests: one real Synapse per test session, and practitioner clients.

Every test under tests/integration is marked `synapse`, so `pytest -m "not synapse"` skips them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from bot.devserver import LocalSynapse, free_port
from devkit.botproc import BotProcess, write_bot_config
from devkit.practitioner import Practitioner

HERE = Path(__file__).parent

MakePractitioner = Callable[..., Awaitable[Practitioner]]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark before `-m` selection runs, so `-m "not synapse"` deselects these tests."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.synapse)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def synapse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalSynapse]:
    """One Synapse on a free 127.0.0.1 port for the whole session, with relaxed rate limits."""
    server = LocalSynapse(
        tmp_path_factory.mktemp("synapse"), port=free_port(), relaxed_rate_limits=True
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class PractitionerFactory:
    """`await factory("alice")` registers a fresh `@alice-<random>` user on one Synapse, logs it
    in with its own E2EE store and starts its sync loop."""

    def __init__(self, synapse: LocalSynapse, root: Path) -> None:
        self._synapse = synapse
        self._root = root
        self.created: list[Practitioner] = []

    async def __call__(self, name: str = "p", *, displayname: str | None = None) -> Practitioner:
        localpart = f"{name.lower()}-{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        user_id = await self._synapse.register_user(localpart, password, displayname=displayname)
        practitioner = Practitioner(
            self._synapse.base_url, user_id, password, self._root / localpart
        )
        self.created.append(practitioner)
        await practitioner.login()
        return practitioner

    async def close_all(self) -> None:
        for practitioner in reversed(self.created):
            await practitioner.close()


@pytest_asyncio.fixture(loop_scope="session")
async def make_practitioner(
    synapse: LocalSynapse, tmp_path: Path
) -> AsyncIterator[MakePractitioner]:
    """Practitioner clients on the session's Synapse, all closed at test end."""
    factory = PractitionerFactory(synapse, tmp_path / "clients")
    try:
        yield factory
    finally:
        await factory.close_all()


class BotFactory:
    """Starts bot processes, each with its own account and storage, like a fresh deployment."""

    def __init__(self, synapse: LocalSynapse, root: Path) -> None:
        self._synapse = synapse
        self._root = root
        self.started: list[BotProcess] = []

    async def __call__(
        self, name: str = "patchwork", *, start: bool = True, **config: object
    ) -> BotProcess:
        localpart = f"{name}-{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        user_id = await self._synapse.register_user(localpart, password)
        folder = self._root / localpart
        folder.mkdir(parents=True)
        config_path = write_bot_config(
            folder / "patchwork.yaml",
            homeserver_url=self._synapse.base_url,
            user_id=user_id,
            password=password,
            storage=folder / "data",
            **config,  # type: ignore[arg-type]
        )
        bot = BotProcess(config_path, folder / "bot.log", user_id=user_id)
        self.started.append(bot)
        if start:
            await bot.start()
        return bot


@pytest_asyncio.fixture(loop_scope="session")
async def make_bot(synapse: LocalSynapse, tmp_path: Path) -> AsyncIterator[BotFactory]:
    """A factory for bot processes (`python -m bot run --config ...`), stopped at test end."""
    factory = BotFactory(synapse, tmp_path / "bots")
    try:
        yield factory
    finally:
        for bot in factory.started:
            await bot.stop()
