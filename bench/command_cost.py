"""Where the bot's own time goes for one `!whois`, in-process, without a homeserver.

Runs the bot's real pipeline (the sync loop's `_apply`, the router, the dispatcher, the outbox
sender with its sent hook) against a fake nio client that holds N family rooms, on a database
seeded to a council's size with a year of history (`bench.history`), and times each stage:
decrypt (megolm, vodozemac, and parsing the event), parse (the command line), the command's
transaction (inbox check, handling, audit row, reply queued, the sync token of its response,
COMMIT with its fsync, and the reply read back as due in the COMMIT's trip), hand-off (until
the reply's lane calls `room_send`), encrypt (megolm, which nio does inside `room_send`, timed
apart) and, after the homeserver's answer (taken as instant), the "sent" mark (the sender's
transaction and its hook, as in the bot). The first five are the answer's path: the reply
leaves for the homeserver at the end of them. The "sent" mark and the pass the lane's end
wakes come after, while the homeserver delivers the reply, and are reported apart. Each
stage's median count of trips to the database thread (one may carry several statements) and
the time SQLite itself spent on them (fsync included) are reported beside its time. The
baseline is the same pipeline on a fresh database with 10 rooms, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from nio import Event, MatrixRoom, RoomMessageText, RoomSendResponse
from nio.crypto.sessions import InboundGroupSession, OutboundGroupSession

from bench.dbtime import DatabaseTime
from bench.history import seed_families, seed_history, utc
from bot.clock import ManualClock
from bot.config import parse_config
from bot.matrix import NioGateway
from bot.metrics import Metrics
from bot.outbox import OutboxSender
from bot.ratelimit import SenderRateLimit
from bot.router import EventRouter
from bot.settings import prompt_settings, team_policy
from bot.sync import SyncLoop
from commands import build_registry
from commands.framework.parser import command_text, parse_invocation
from rooms.prompts import on_message_sent
from storage import Database

SERVER = "council.example"
BOT = f"@patchwork:{SERVER}"
NOW = utc(2027, 3, 1)
KEY = bytes(range(32))
STAGES = ("decrypt", "parse", "transaction", "hand-off", "encrypt", "sent mark")
ON_PATH = STAGES[:5]
"""Until the reply leaves for the homeserver: the bot's own part of the round trip."""
PASS_TRIPS = 2


class SentSignal(Metrics):
    """The bot's metrics, and a signal each time a sent item's transaction has committed."""

    def __init__(self) -> None:
        super().__init__()
        self.committed = asyncio.Event()

    def sent(self, kind: str) -> None:
        super().sent(kind)
        self.committed.set()


class FakeClient:
    """The parts of nio's AsyncClient the pipeline touches; sends are answered at once."""

    def __init__(self, rooms: dict[str, MatrixRoom]) -> None:
        self.user_id = BOT
        self.device_id = "PATCHWORK"
        self.rooms = rooms
        self.olm = None
        self.should_upload_keys = self.should_query_keys = self.should_claim_keys = False
        self.sent = 0
        self.last: dict[str, Any] = {}  # the last event sent, as it would be encrypted
        self.called = asyncio.Event()  # set when `room_send` is called

    async def send_to_device_messages(self) -> None:
        return None

    async def room_send(self, room_id: str, event_type: str, content: dict[str, Any],
                        **_: Any) -> RoomSendResponse:
        self.sent += 1
        self.last = {"type": event_type, "content": content, "room_id": room_id}
        self.called.set()
        return RoomSendResponse(f"$sent{self.sent}", room_id)

    async def update_receipt_marker(self, room_id: str, event_id: str) -> None:
        return None


def _rooms(families: int, members: int, target_members: int) -> dict[str, MatrixRoom]:
    rooms: dict[str, MatrixRoom] = {}
    for n in range(1, families + 1):
        room = MatrixRoom(f"!family{n}:{SERVER}", BOT, encrypted=True)
        room.add_member(BOT, "Patchwork", None)
        for m in range(target_members if n == 1 else members):
            room.add_member(f"@p{n}-{m}:{SERVER}", f"Practitioner {n}-{m}", None)
        rooms[room.room_id] = room
    return rooms


async def prepare(path: Path, families: int, members: int, days: int) -> dict[str, int]:
    """Seed the database: families, the target family's 12 members, and `days` of history."""
    async with await Database.open(path, clock=ManualClock(NOW), audit_key=KEY):
        pass
    target = 12
    await asyncio.to_thread(seed_families, path, families, members, NOW - timedelta(days=days),
                            server=SERVER, bot=BOT)
    async with await Database.open(path, clock=ManualClock(NOW), audit_key=KEY) as db:
        async with db.transaction() as tx:
            for m in range(members, target):
                user_id = f"@p1-{m}:{SERVER}"
                await tx.practitioners.ensure(user_id, f"Practitioner 1-{m}")
                await tx.involvements.upsert_membership(1, user_id, "join")
    history = await asyncio.to_thread(seed_history, path, days, NOW, audit_key=KEY, bot=BOT) \
        if days else None
    return {} if history is None else vars(history)


def _pipeline(
    db: Database, client: FakeClient, folder: Path, metrics: Metrics
) -> tuple[SyncLoop, OutboxSender]:
    config = parse_config({
        "homeserver": {"url": "http://127.0.0.1:9"},
        "bot": {"user_id": BOT, "password": "x"},
        "storage": {"path": str(folder), "pickle_key": "0123456789abcdef"},
        "policy": {"allowed_servers": [SERVER]},
    })
    fake: Any = client
    policy = team_policy(config, BOT)
    sender = OutboxSender(db, fake, on_sent=on_message_sent, metrics=metrics)
    router = EventRouter(client=fake, registry=build_registry(), gateway=NioGateway(fake),
                         policy=policy, prompts=prompt_settings(config),
                         rate_limit=SenderRateLimit(burst=10**6, per_second=10**6))
    loop = SyncLoop(client=fake, db=db, router=router, outbox=sender, config=config,
                    policy=policy)
    return loop, sender


async def measure(path: Path, families: int, rounds: int) -> dict[str, Any]:
    client = FakeClient(_rooms(families, 6, 12))
    room = client.rooms[f"!family1:{SERVER}"]
    sender_id = f"@p1-1:{SERVER}"
    outbound = OutboundGroupSession()
    outbound.mark_as_shared()
    outbound.max_messages = ours_max = 10**6
    inbound = InboundGroupSession(outbound.session_key, "SIGNINGKEY", "SENDERKEY", room.room_id)
    ours = OutboundGroupSession()
    ours.mark_as_shared()
    ours.max_messages = ours_max
    times: dict[str, list[float]] = {stage: [] for stage in STAGES}
    trips: dict[str, list[int]] = {stage: [] for stage in STAGES}
    sqlite: dict[str, list[float]] = {stage: [] for stage in STAGES}
    meter = DatabaseTime()
    clock = ManualClock(NOW)
    with meter.counting():
        async with await Database.open(path, clock=clock, audit_key=KEY) as db:
            signal = SentSignal()
            loop, sender = _pipeline(db, client, path.parent, signal)
            stop = asyncio.Event()
            running = asyncio.create_task(sender.run(stop))
            await asyncio.sleep(0.01)  # asleep, waiting for work, as in the bot
            after_send: list[float] = []

            async def timed(stage: str, work: Callable[[], Awaitable[object]]) -> object:
                calls, spent = meter.calls, meter.seconds
                started = time.perf_counter()
                result = await work()
                times[stage].append(time.perf_counter() - started)
                trips[stage].append(meter.calls - calls)
                sqlite[stage].append(meter.seconds - spent)
                return result

            for index in range(rounds + 5):
                clock.advance(timedelta(seconds=2))
                event_id = f"$bench{index}"
                body = {"type": "m.room.message", "room_id": room.room_id,
                        "content": {"msgtype": "m.text", "body": "!whois"}}
                ciphertext = outbound.encrypt(json.dumps(body))

                async def decrypt(ciphertext: str = ciphertext, event_id: str = event_id) -> Event:
                    plaintext, _ = inbound.decrypt(ciphertext)
                    source = json.loads(plaintext)
                    source.update(event_id=event_id, sender=sender_id, origin_server_ts=1)
                    event = Event.parse_event(source)
                    event.decrypted = True
                    return event

                event = await timed("decrypt", decrypt)
                assert isinstance(event, RoomMessageText)

                async def parse(event: RoomMessageText = event) -> object:
                    return parse_invocation(command_text(event.body, event.formatted_body), "!")

                await timed("parse", parse)
                async def handle(event: RoomMessageText = event, index: int = index) -> None:
                    # A response holding one command: its token commits with the command.
                    await loop.process_event(room, event, apply_effects=True,
                                             next_batch=f"s{index}")

                signal.committed.clear()
                client.called.clear()
                await timed("transaction", handle)
                await timed("hand-off", client.called.wait)
                await timed("sent mark", signal.committed.wait)
                sent_at = meter.calls
                assert client.last["content"].get("body"), "the command's reply was not sent"

                async def encrypt(plaintext: dict[str, Any] = client.last) -> str:
                    # nio encrypts inside room_send, in the lane; timed apart from the send.
                    return str(ours.encrypt(json.dumps(plaintext)))

                await timed("encrypt", encrypt)
                started = time.perf_counter()
                await _passed(meter, sent_at)
                after_send.append(time.perf_counter() - started)
            stop.set()
            sender.wake()
            await running
            if index >= 0:
                for stage in STAGES:
                    del times[stage][:5], trips[stage][:5], sqlite[stage][:5]  # warm-up
                del after_send[:5]
            async with db.read() as tx:
                intact = await tx.audit.verify() is None
    medians = {stage: 1000 * statistics.median(values) for stage, values in times.items()}
    counts = {stage: statistics.median(values) for stage, values in trips.items()}
    in_sqlite = {stage: 1000 * statistics.median(values) for stage, values in sqlite.items()}
    return {"median_ms": medians, "path_ms": sum(medians[stage] for stage in ON_PATH),
            "total_ms": sum(medians.values()), "trips": counts,
            "sqlite_ms": in_sqlite, "audit_intact": intact,
            "pass_after_send_ms": 1000 * statistics.median(after_send)}


async def _passed(meter: DatabaseTime, sent_at: int) -> None:
    """Until the pass that the lane's end wakes has made its two trips (what is due, when
    next to look), off the reply's path: waited for without an idle gap, which would let the
    machine slow down before the next round."""
    async with asyncio.timeout(5):
        while meter.calls < sent_at + PASS_TRIPS:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0)


async def run(families: int, days: int, rounds: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="patchwork-cost-") as folder:
        for label, count, history in (("baseline", 10, 0), ("council", families, days)):
            path = Path(folder) / label / "patchwork.db"
            path.parent.mkdir()
            seeded = await prepare(path, count, 6, history)
            figures = await measure(path, count, rounds)
            figures.update(rooms=count, history_days=history, rows=seeded)
            result[label] = figures
    return result


def report(result: dict[str, Any]) -> None:
    base, council = result["baseline"], result["council"]
    print(f"bot's own cost of one !whois, in-process (median of each stage, ms); "
          f"council: {council['rooms']} rooms, {council['history_days']} days of history "
          f"{council['rows']}")
    print(f"  {'stage':<26}{'10 rooms':>10}{'council':>10}{'trips':>8}{'in SQLite':>11}")

    def row(label: str, stages: tuple[str, ...], key: str | None = None) -> None:
        def ms(figures: dict[str, Any]) -> float:
            return figures[key] if key else sum(figures["median_ms"][s] for s in stages)

        trips = sum(council["trips"][stage] for stage in stages)
        in_sqlite = sum(council["sqlite_ms"][stage] for stage in stages)
        print(f"  {label:<26}{ms(base):10.3f}{ms(council):10.3f}{trips:8g}{in_sqlite:11.3f}")

    for stage in ON_PATH:
        row(stage, (stage,))
    row("the answer's path", ON_PATH, "path_ms")
    row("then the sent mark", ("sent mark",))
    row("total", STAGES, "total_ms")
    print(f"  then, off the reply's path, the pass its lane's end wakes ({PASS_TRIPS} trips): "
          f"{base['pass_after_send_ms']:.3f} / {council['pass_after_send_ms']:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--families", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--json", type=Path, default=Path("build/bench/command_cost.json"))
    args = parser.parse_args()
    result = asyncio.run(run(args.families, args.days, args.rounds))
    report(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"  written to {args.json}")


if __name__ == "__main__":
    main()
