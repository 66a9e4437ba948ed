"""Case references stay out of the log above DEBUG: reconciling rooms at start-up names a
family by its internal id, whether it changed the roster or failed."""

# ruff: noqa: F811 - pytest fixtures imported from the sync pipeline tests are used by name
from __future__ import annotations

import logging
from typing import Any

import pytest

import bot.sync
from bot.sync import SyncLoop
from storage import Database
from tests.unit.test_sync_pipeline import (  # noqa: F401 - fixtures
    ALICE,
    ROOM,
    FakeClient,
    client,
    clock,
    db,
    loop,
)


async def test_reconciling_logs_family_ids_never_case_references(
    loop: SyncLoop,
    db: Database,
    client: FakeClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with db.transaction() as tx:
        changed = await tx.families.create("LDC-2026-0101", ROOM, ALICE)
        broken = await tx.families.create("LDC-2026-0102", "!other:localhost", ALICE)
    client.rooms["!other:localhost"] = client.rooms[ROOM]

    async def reconcile(
        tx: Any, family: Any, members: Any, policy: Any, direct_rooms: Any = None
    ) -> list[Any]:
        if family.id == broken.id:
            raise RuntimeError("bug")
        return ["one change"]

    monkeypatch.setattr(bot.sync, "reconcile_family", reconcile)
    with caplog.at_level(logging.INFO):
        await loop.reconcile_rooms()
    lines = [record.getMessage() for record in caplog.records if record.levelno >= logging.INFO]
    assert f"reconciled 1 roster changes in family {changed.id}" in lines
    assert any(f"family {broken.id} failed" in line for line in lines)
    assert not [line for line in lines if "LDC-2026-01" in line], lines
