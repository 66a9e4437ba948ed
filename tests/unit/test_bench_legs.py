"""Reading a round trip's legs from Synapse's access log (bench.legs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.legs import LEGS, PARTS, legs, read_requests

ROOM = "!team:localhost"
ASKER, BOT, OTHER = "@alice:localhost", "@patchwork:localhost", "@bob:localhost"


def _line(end: str, user: str, seconds: float, request: str, db_wait: float = 0.004) -> str:
    """A line as Synapse 1.16x writes it; `end` is when the response was written."""
    return (f"2026-12-02 05:48:{end} - synapse.access.http.8008 - INFO - 127.0.0.1 - 8008 - "
            f"{{{user}}} Processed request: {seconds:.3f}sec/0.000sec ru=(0.003sec, 0.001sec) "
            f'db=({db_wait:.3f}sec/0.006sec/9) 2B 200 "{request} HTTP/1.1" "aiohttp"'
            " [0 dbevts]\n")


def _send(room: str = ROOM) -> str:
    return f"PUT /_matrix/client/v3/rooms/{room}/send/m.room.encrypted/t1"


SYNC = "GET /_matrix/client/v3/sync?since=s1&timeout=30000"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "homeserver.log"
    path.write_text("".join([
        "2026-12-02 05:48:00,000 - synapse.http.server - WARNING - not an access line\n",
        _line("10,100", ASKER, 0.070, _send()),  # the ask: 10.030 to 10.100
        _line("10,090", OTHER, 5.0, SYNC),  # someone else's sync: not a leg
        _line("10,060", BOT, 9.0, SYNC),  # an earlier sync of the bot's, before the ask
        _line("10,130", BOT, 2.0, SYNC),  # the sync that brings the ask
        _line("10,200", ASKER, 0.090, SYNC),  # the asker's own ask coming back: not the answer
        _line("10,220", BOT, 0.065, _send(), db_wait=0.041),  # the answer: 10.155 to 10.220
        _line("10,250", ASKER, 0.045, SYNC),  # the asker sees it
        _line("20,100", ASKER, 0.050, _send("!elsewhere:localhost")),
    ]), encoding="utf-8")
    return path


def test_each_leg_is_measured_from_the_log(log: Path) -> None:
    found = legs(read_requests(log), ASKER, BOT, ROOM)
    assert {leg: [round(s * 1000) for s in times] for leg, times in found.items()} == {
        "ask_send": [70], "answerer_woken": [30], "answerer_own": [25],
        "answer_send": [65], "asker_woken": [30],
        # Of the answer's send: the homeserver's CPU, its wait for a database connection,
        # and its time in transactions.
        "answer_send_cpu": [4], "answer_send_db_wait": [41], "answer_send_db": [6],
        # The bot was waiting in that sync (asked for at 8.130) when the ask was stored.
        "answerer_not_waiting": [0],
    }
    assert sum(found[leg][0] for leg in LEGS) == pytest.approx(0.220)


def test_an_answerer_busy_when_the_ask_came_is_not_waiting_until_its_next_sync(
    log: Path,
) -> None:
    """The sync that brings the ask was sent 20 ms after the ask was stored (the bot still
    busy with its last response): those 20 ms of its waking are the bot's."""
    text = log.read_text(encoding="utf-8").replace(
        _line("10,130", BOT, 2.0, SYNC), _line("10,130", BOT, 0.010, SYNC))
    log.write_text(text, encoding="utf-8")
    found = legs(read_requests(log), ASKER, BOT, ROOM)
    assert [round(s * 1000) for s in found["answerer_woken"]] == [30]
    assert [round(s * 1000) for s in found["answerer_not_waiting"]] == [20]


def test_an_answer_by_someone_else_is_not_a_round_trip(log: Path) -> None:
    assert legs(read_requests(log), ASKER, OTHER, ROOM) == {
        leg: [] for leg in (*LEGS, *PARTS)}


def test_reading_starts_where_it_is_told(log: Path) -> None:
    offset = log.read_text(encoding="utf-8").index("2026-12-02 05:48:20")
    [only] = read_requests(log, offset)
    assert (only.user, only.method) == (ASKER, "PUT")
    assert "/rooms/!elsewhere:localhost/" in only.path
