"""The legs of a round trip through the homeserver, read from Synapse's access log.

A round trip (a command and its answer, or a message and its echo) is five legs: the asker's
send, the homeserver waking the answerer's sync, the answerer's own time (from that sync's
response leaving the homeserver to the answer arriving), the answer's send, and the homeserver
waking the asker's sync. Only the third is the answerer's doing; so comparing the bot's legs
with an echoing client's says which part of the bot's own cost is the bot, and which is the
homeserver serving it. The log's clock has millisecond resolution.

The log also gives, for each request, the homeserver's CPU for it, its wait for a database
connection, and its time in database transactions; the answer's send is split so. And it says
when each sync was asked for: of the answerer's waking, the part before the sync that brought
the ask was even sent (the answerer busy with its last response) is the answerer's, not the
homeserver's.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

LEGS = ("ask_send", "answerer_woken", "answerer_own", "answer_send", "asker_woken")
PARTS = ("answer_send_cpu", "answer_send_db_wait", "answer_send_db", "answerer_not_waiting")
"""Of the answer's send: the homeserver's CPU, its wait for a database connection, and its
time in database transactions; of the answerer's waking, the time from the ask stored to the
answerer's next sync sent, when it was not waiting in one (parts of `answer_send` and
`answerer_woken`, not legs of their own)."""
_LINE = re.compile(
    r"^(\S+ \S+) - synapse\.access\.http\.\d+ - INFO - .*?\{(\S*)\} Processed request: "
    r"([\d.]+)sec/([\d.]+)sec ru=\(([\d.]+)sec, ([\d.]+)sec\) db=\(([\d.]+)sec/([\d.]+)sec/\d+\)"
    r" .*? \d+ \"(\w+) (\S+) "
)
_MAX_ANSWER_SECONDS = 5.0


@dataclass(frozen=True)
class Request:
    start: float
    end: float
    user: str
    method: str
    path: str
    cpu: float
    db_wait: float
    db: float

    @property
    def is_sync(self) -> bool:
        return self.path.endswith("/sync")

    def sends_to(self, room_id: str) -> bool:
        return self.method == "PUT" and f"/rooms/{room_id}/send/" in self.path


def read_requests(log: Path, offset: int = 0) -> list[Request]:
    """Every client request the log records from `offset` (a byte position) on, by start."""
    requests = []
    with log.open(encoding="utf-8", errors="replace") as lines:
        lines.seek(offset)
        for line in lines:
            match = _LINE.match(line)
            if match is None:
                continue
            end = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            start = end - float(match[3]) - float(match[4])
            requests.append(Request(
                start, end, match[2], match[9], match[10].split("?")[0],
                cpu=float(match[5]) + float(match[6]), db_wait=float(match[7]),
                db=float(match[8])))
    return sorted(requests, key=lambda request: request.start)


def legs(requests: list[Request], asker: str, answerer: str, room_id: str
         ) -> dict[str, list[float]]:
    """Each leg's times (seconds) over the round trips in `room_id`: a send by `asker`
    followed by one by `answerer`."""
    sends = [request for request in requests if request.sends_to(room_id)]
    woken = [r for r in requests if r.user == answerer and r.is_sync]
    seen = [r for r in requests if r.user == asker and r.is_sync]
    found: dict[str, list[float]] = {leg: [] for leg in (*LEGS, *PARTS)}
    for ask, answer in itertools.pairwise(sends):
        if ask.user != asker or answer.user != answerer:
            continue
        if answer.start - ask.end > _MAX_ANSWER_SECONDS:
            continue
        # The sync that brought the ask is the answerer's last one to return before it answered.
        brought = [sync for sync in woken if ask.start <= sync.end <= answer.start]
        # The asker's sync that shows the answer returns after it was stored (an earlier one
        # may be bringing back the asker's own message).
        told = min((sync for sync in seen if sync.end >= answer.end), default=None,
                   key=lambda sync: sync.end)
        if not brought or told is None:
            continue
        sync = brought[-1]
        for leg, seconds in zip((*LEGS, *PARTS), (
            ask.end - ask.start, sync.end - ask.end, answer.start - sync.end,
            answer.end - answer.start, told.end - answer.end,
            answer.cpu, answer.db_wait, answer.db, max(0.0, sync.start - ask.end),
        ), strict=True):
            found[leg].append(seconds)
    return found
