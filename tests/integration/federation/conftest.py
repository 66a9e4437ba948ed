"""Three federating Synapses for the whole session: the bot's own server, an allowed partner
agency's server, and a server that is not on `policy.allowed_servers`.

All on loopback addresses (127.0.0.1, .2, .3) with IP-literal names and ports; see
`devkit.federation`. They start together, in about the time one takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from devkit.federation import FederatingSynapse
from tests.integration.conftest import BotFactory, PractitionerFactory


@dataclass(frozen=True)
class Federation:
    home: FederatingSynapse
    """The bot's own homeserver."""
    partner: FederatingSynapse
    """Another agency's homeserver, on the allowed list."""
    outsider: FederatingSynapse
    """A homeserver whose users may not be on a team."""

    @property
    def allowed(self) -> list[str]:
        return [self.home.server_name, self.partner.server_name]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def federation(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Federation]:
    root = tmp_path_factory.mktemp("federation")
    hosts = {"home": "127.0.0.1", "partner": "127.0.0.2", "outsider": "127.0.0.3"}
    servers = [FederatingSynapse(root / name, host) for name, host in hosts.items()]
    try:
        await asyncio.gather(*(server.start() for server in servers))
        yield Federation(*servers)
    finally:
        await asyncio.gather(*(server.stop() for server in servers))


@dataclass
class Practitioners:
    """`await people.home("lead")`, `await people.partner("teacher")`, ..."""

    home: PractitionerFactory
    partner: PractitionerFactory
    outsider: PractitionerFactory


@pytest_asyncio.fixture(loop_scope="session")
async def people(federation: Federation, tmp_path: Path) -> AsyncIterator[Practitioners]:
    factories = Practitioners(
        PractitionerFactory(federation.home, tmp_path / "home"),
        PractitionerFactory(federation.partner, tmp_path / "partner"),
        PractitionerFactory(federation.outsider, tmp_path / "outsider"),
    )
    try:
        yield factories
    finally:
        for factory in (factories.outsider, factories.partner, factories.home):
            await factory.close_all()


@pytest_asyncio.fixture(loop_scope="session")
async def make_home_bot(federation: Federation, tmp_path: Path) -> AsyncIterator[BotFactory]:
    """Bots on the home server; pass `allowed_servers=federation.allowed`."""
    factory = BotFactory(federation.home, tmp_path / "bots")
    try:
        yield factory
    finally:
        for bot in factory.started:
            await bot.stop()
