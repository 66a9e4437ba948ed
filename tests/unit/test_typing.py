"""Typing notices while a slow answer is prepared: which commands count as slow, and the
helper the export command can use."""

from __future__ import annotations

from typing import Any

from bot.typing import is_slow, typing_while


def test_family_creation_and_exports_are_slow_other_commands_are_not() -> None:
    assert is_slow("family", "new LDC-2026-0042")
    assert is_slow("family", "NEW ldc-2026-0042")
    assert is_slow("export", "")
    assert is_slow("mydata", "")
    assert not is_slow("family", "basis public_task")
    assert not is_slow("whois", "")


class FakeClient:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, bool, int]] = []
        self.fail = fail

    async def room_typing(self, room_id: str, typing_state: bool, timeout: int) -> None:  # noqa: ASYNC109
        self.calls.append((room_id, typing_state, timeout))
        if self.fail:
            raise OSError("homeserver away")


async def test_typing_while_starts_and_stops_and_never_fails_the_work() -> None:
    client: Any = FakeClient()
    async with typing_while(client, "!dm:x"):
        assert client.calls == [("!dm:x", True, 15_000)]
    assert client.calls[-1][:2] == ("!dm:x", False)
    failing: Any = FakeClient(fail=True)
    async with typing_while(failing, "!dm:x"):
        done = True
    assert done
    assert len(failing.calls) == 2
