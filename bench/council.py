"""A council's figures against a real local Synapse, each against a baseline from the same run.

Seeds family rooms in steps (`bench.seeding`, not timed) and, at each step (the bot in N
rooms), measures:
- start-up: process start to the first command answered, the bot's CPU until then and its
  peak RSS, against a plain nio client's since-token full-state sync of the same account (and
  a sync with no token, what a new install or a lost database needs);
- latency: `!whois` in an encrypted family room of 12 members, min/median/p95/max, against
  the floor: two plain nio clients in an encrypted room, one echoing the other;
- concurrency: 20 practitioners in 20 family rooms asking at once for `--seconds`:
  throughput and p95 against the single-user p95, and against the floor at 20 at once (20
  pairs of plain nio clients, one of each pair echoing the other);
and once, at the last step: `!cases` for an administrator who leads 384 families (every
family must reach them, split over several messages), and `!whois` while a sweep over
`--due` involvements writes its batches and while its prompts are sent, against idle.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import logging
import math
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nio import AsyncClient, AsyncClientConfig, Event, RoomMessageText, SyncResponse

from bench import mirroring
from bench.legs import LEGS, PARTS, legs, read_requests
from bench.seeding import Council, add_lead_families, add_rooms, make_due, write_families
from bot.devserver import LocalSynapse, free_port
from devkit.botproc import BotProcess, write_bot_config
from devkit.practitioner import Practitioner
from storage import BACKGROUND

WORKERS = 20
TEAM = 12  # members of the latency room, the bot and its lead included
CASES_FAMILIES = 384
SETTLE_STILL_SECONDS = 300
UNASKED_SECONDS = 5.0
"""How long background sends are counted with nobody asking, after the sweep's figures."""


def summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0, **dict.fromkeys(("min_ms", "median_ms", "p95_ms", "max_ms"), math.nan)}
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(samples), "min_ms": ordered[0] * 1000,
            "median_ms": statistics.median(ordered) * 1000, "p95_ms": p95 * 1000,
            "max_ms": ordered[-1] * 1000}


async def at_once(round_trips: list[Callable[[], Awaitable[float]]],
                  seconds: float) -> tuple[list[float], float]:
    """Every one of `round_trips` repeated, all at the same time, for `seconds`: the time of
    each round trip, and how long it all took."""
    samples: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def keep_going(round_trip: Callable[[], Awaitable[float]]) -> None:
        while time.perf_counter() < deadline:
            samples.append(await round_trip())

    await asyncio.gather(*(keep_going(round_trip) for round_trip in round_trips))
    return samples, time.perf_counter() - started


def _proc(pid: int) -> tuple[float, float]:
    """(CPU seconds so far, peak RSS in MB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / 100
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


class Suite:
    def __init__(self, root: Path, synapse: LocalSynapse, args: argparse.Namespace) -> None:
        self.root, self.synapse, self.args = root, synapse, args
        self.council = Council()
        self.people: list[Practitioner] = []
        self.results: dict[str, Any] = {"steps": {}}
        self.echo_pairs: list[tuple[Practitioner, Practitioner, str]] = []

    async def person(self, name: str, *, admin: bool = False) -> Practitioner:
        password = uuid.uuid4().hex
        user_id = await self.synapse.register_user(f"{name}-{uuid.uuid4().hex[:6]}", password,
                                                   admin=admin)
        person = Practitioner(self.synapse.base_url, user_id, password, self.root / name)
        await person.login()
        self.people.append(person)
        return person

    async def setup(self) -> None:
        password = uuid.uuid4().hex
        self.bot_user = await self.synapse.register_user("patchwork", password)
        self.lead = await self.person("lead", admin=True)
        self.workers = [await self.person(f"w{n}") for n in range(WORKERS)]
        self.config = write_bot_config(
            self.root / "patchwork.yaml", homeserver_url=self.synapse.base_url,
            user_id=self.bot_user, password=password, storage=self.root / "bot",
            admins=[self.workers[0].user_id],
            extra={"bot": {"command_burst": 10000, "commands_per_minute": 100000},
                   "prompts": {"sweep_every": "5s", "timezone": "UTC", "working_hours": {
                       "days": ["MO", "TU", "WE", "TH", "FR", "SA", "SU"],
                       "start": "00:00", "end": "23:59"}}},
        )
        self.bot = BotProcess(self.config, self.root / "bot.log", user_id=self.bot_user)
        await self.bot.start()  # creates the database, logs in, uploads keys
        await self.bot.stop()
        self.database = self.root / "bot" / "patchwork.db"
        # The floor's room has 12 members too, all of them clients in this process, so both
        # paths deliver each message to as many devices.
        alice, others = self.workers[0], [self.lead, *self.workers[1 : TEAM - 1]]
        self.floor_room = await alice.create_encrypted_room(invite=[p.user_id for p in others])
        for person in others:
            await person.join(self.floor_room)
        team = [worker.user_id for worker in self.workers[: TEAM - 2]]
        rooms = await add_rooms(self.council, self.lead, self.bot_user,
                                [team] + [[w.user_id] for w in self.workers])
        self.team_room, self.worker_rooms = rooms[0], rooms[1:]
        write_families(self.database, self.council, rooms, self.lead.user_id, self.bot_user)

    async def grow(self, rooms: int, members_each: int) -> None:
        """Seed up to `rooms` family rooms (the bot is stopped)."""
        missing = rooms - len(self.council.rooms)
        if missing <= 0:
            return
        started = time.perf_counter()
        first = len(self.council.rooms)
        members = [[self.workers[(first + n + k) % WORKERS].user_id
                    for k in range(members_each)] for n in range(missing)]
        new = await add_rooms(self.council, self.lead, self.bot_user, members)
        write_families(self.database, self.council, new, self.lead.user_id, self.bot_user)
        await self.settle()
        logging.info("seeded %d rooms in %.0f s", missing, time.perf_counter() - started)

    async def settle(self) -> None:
        """Let the bot take in what seeding did, as it would have live (the joins, their
        welcomes, each practitioner's direct chat), so a timed start is a restart after a
        short stop: start it, wait until nothing is left to send but messages held for
        someone's join, and stop it. There is no deadline while the bot gets on with it (a
        slow machine takes most of an hour over a thousand rooms' welcomes), only when the
        count of what is left stands still."""
        await self.bot.start(timeout=900)
        left, still = await asyncio.to_thread(self.unsent), 0.0
        while left:
            await asyncio.sleep(0.5)
            now = await asyncio.to_thread(self.unsent)
            still = still + 0.5 if now == left else 0.0
            if still > SETTLE_STILL_SECONDS:
                raise TimeoutError(f"seeding: {now} outbox items stuck for {still:.0f} s")
            left = now
        await self.bot.stop()

    def background_sent(self) -> int:
        """Background items sent so far (prompts, their polls, reminders, start-up work)."""
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True) as conn:
            return int(conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL AND priority = ?",
                (BACKGROUND,)).fetchone()[0])

    def unsent(self) -> int:
        """Outbox items still to send, but for messages held for someone's join."""
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True) as conn:
            return int(conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL"
                " AND json_extract(payload, '$.await_join') IS NULL").fetchone()[0])

    async def plain_sync(self, since: str | None) -> float:
        """A plain nio client's sync as the bot's account (no encryption, one request: the
        to-device messages it is shown are not acknowledged, so the bot still gets them)."""
        session = json.loads((self.root / "bot" / "session.json").read_text())
        client = AsyncClient(self.synapse.base_url, self.bot_user,
                             config=AsyncClientConfig(encryption_enabled=False))
        client.restore_login(self.bot_user, "PLAINBASELINE", session["access_token"])
        try:
            started = time.perf_counter()
            response = await client.sync(timeout=0, since=since, full_state=True,
                                         sync_filter={"room": {"timeline": {"limit": 50}}})
            elapsed = time.perf_counter() - started
            assert isinstance(response, SyncResponse), response
            return elapsed
        finally:
            await client.close()

    async def start_up(self) -> dict[str, float]:
        with sqlite3.connect(self.database) as conn:
            token = conn.execute("SELECT value FROM sync_state WHERE key = 'next_batch'"
                                 ).fetchone()[0]
        since = await self.plain_sync(token)
        fresh = await self.plain_sync(None)
        asker = self.workers[1]
        event_id = await asker.send_text(self.worker_rooms[1], "!whois")
        started = time.perf_counter()
        starting = asyncio.create_task(self.bot.start(timeout=300))
        await asker.wait_for_notice(self.worker_rooms[1], sender=self.bot_user,
                                    after_event_id=event_id, timeout=300)
        answered = time.perf_counter() - started
        await starting
        assert self.bot.process is not None
        cpu, _ = _proc(self.bot.process.pid)
        return {"first_answer_s": answered, "cpu_until_answer_s": cpu,
                "plain_since_token_sync_s": since, "plain_no_token_sync_s": fresh,
                "beyond_plain_sync_s": answered - since}

    @contextlib.asynccontextmanager
    async def only(self, active: list[Practitioner]) -> AsyncIterator[None]:
        """Every other client in this process stops syncing meanwhile: its decrypting would
        otherwise be timed in both paths (they share this process's CPU) and hide the bot's."""
        bystanders = [person for person in self.people if person not in active]
        for person in bystanders:
            await person.pause()
        try:
            yield
        finally:
            # A bystander in every room catches up on all that was sent meanwhile (after a
            # sweep, thousands of prompts): its first sync can take minutes.
            for person in bystanders:
                await person.resume(timeout=600)

    async def start_without_token(self, fresh: float) -> dict[str, float]:
        """A start with no sync token (a new install, a lost database): the full initial
        sync, against the plain nio client's sync with no token timed before the restart
        (`fresh`). Asked again now, Synapse would answer it from its two-minute cache of
        identical sync requests: 4.7 s where it took 43 s at 3,000 rooms. The bot is stopped."""
        with sqlite3.connect(self.database) as conn:
            conn.execute("DELETE FROM sync_state WHERE key = 'next_batch'")
        started = time.perf_counter()
        await self.bot.start(timeout=900)
        ready = time.perf_counter() - started
        await self.workers[1].ask(self.worker_rooms[1], "!whois", bot=self.bot_user,
                                  timeout=300)
        answered = time.perf_counter() - started
        assert self.bot.process is not None
        cpu, peak = _proc(self.bot.process.pid)
        return {"ready_s": ready, "first_answer_s": answered, "cpu_until_answer_s": cpu,
                "peak_rss_mb": peak, "plain_no_token_sync_s": fresh,
                "beyond_plain_sync_s": answered - fresh}

    async def latency(self, rounds: int) -> dict[str, Any]:
        """Two floors: Bob's client, in a few rooms, echoing; and the lead's, in every room
        the bot is in, echoing (the homeserver's cost of serving an account in that many
        rooms, which the bot's account pays too)."""
        alice, bob, lead = self.workers[0], self.workers[1], self.lead
        await alice.ask(self.team_room, "!whois", bot=self.bot_user, timeout=120)  # keys
        floor: list[float] = []
        many: list[float] = []
        command: list[float] = []
        log_from = self.synapse.log_path.stat().st_size
        async with self.only([alice, bob, lead]):
            for index in range(rounds):
                floor.append(await self.echo(alice, bob, index))
                many.append(await self.echo(alice, lead, index))
                started = time.perf_counter()
                await alice.ask(self.team_room, "!whois", bot=self.bot_user, timeout=60)
                command.append(time.perf_counter() - started)
        requests = await asyncio.to_thread(read_requests, self.synapse.log_path, log_from)
        floor_s, many_s, command_s = summary(floor), summary(many), summary(command)
        return {"floor": floor_s, "floor_in_every_room": many_s, "whois": command_s,
                # The same round trips leg by leg, from the homeserver's access log.
                "legs": {path: {leg: summary(times) for leg, times in
                                legs(requests, alice.user_id, answerer, room_id).items()}
                         for path, answerer, room_id in (
                             ("floor", bob.user_id, self.floor_room),
                             ("floor_in_every_room", lead.user_id, self.floor_room),
                             ("whois", self.bot_user, self.team_room))},
                "own_cost_ms": command_s["median_ms"] - floor_s["median_ms"],
                "ratio": command_s["median_ms"] / floor_s["median_ms"],
                "own_cost_vs_every_room_ms": command_s["median_ms"] - many_s["median_ms"],
                "whois_samples_ms": [s * 1000 for s in command]}

    async def echo(self, alice: Practitioner, bob: Practitioner, index: int,
                   room_id: str | None = None) -> float:
        """Alice's message, Bob's client answering it, Alice seeing the answer: a command's
        two trips through the homeserver, with a client that writes nothing."""
        room_id = room_id or self.floor_room
        started = time.perf_counter()
        sent = await alice.send_text(room_id, f"ping {index}")
        await bob.wait_for_event(room_id, _is(sent))
        reply = await bob.send_text(room_id, f"pong {index}")
        await alice.wait_for_event(room_id, _is(reply))
        return time.perf_counter() - started

    async def concurrent_floor(self, seconds: float) -> dict[str, Any]:
        """The floor at 20 at once: each practitioner with an echoing client of their own, in
        an encrypted room of two, for as long as the bot's concurrency figure. No bot, no
        database, and no limit on concurrent sends: what the homeserver (and this process's
        clients) can do with 20 round trips at a time."""
        if not self.echo_pairs:
            for n, worker in enumerate(self.workers):
                echoer = await self.person(f"echo{n}")
                room_id = await worker.create_encrypted_room(invite=[echoer.user_id])
                await echoer.join(room_id)
                self.echo_pairs.append((worker, echoer, room_id))
        index = itertools.count()

        async def echo(worker: Practitioner, echoer: Practitioner, room_id: str) -> float:
            return await self.echo(worker, echoer, next(index), room_id)

        active = [person for pair in self.echo_pairs for person in pair[:2]]
        async with self.only(active):
            for pair in self.echo_pairs:
                await echo(*pair)  # keys
            samples, elapsed = await at_once(
                [functools.partial(echo, *pair) for pair in self.echo_pairs], seconds)
        return {"round_trips": len(samples), "per_second": len(samples) / elapsed,
                **summary(samples)}

    async def concurrency(self, seconds: float) -> dict[str, Any]:
        async def whois(worker: Practitioner, room_id: str) -> float:
            started = time.perf_counter()
            await worker.ask(room_id, "!whois", bot=self.bot_user, timeout=120)
            return time.perf_counter() - started

        pairs = list(zip(self.workers, self.worker_rooms, strict=True))
        for worker, room_id in pairs:
            await whois(worker, room_id)  # keys
        async with self.only(self.workers):
            cpu = self.cpu_seconds()
            samples, elapsed = await at_once(
                [functools.partial(whois, *pair) for pair in pairs], seconds)
            used = {name: after - cpu[name] for name, after in self.cpu_seconds().items()}
        return {"answers": len(samples), "per_second": len(samples) / elapsed,
                # Who was busy: of the machine's two cores, how much each process used.
                "cores_used": {name: seconds / elapsed for name, seconds in used.items()},
                "bot_cpu_per_answer_ms": used["bot"] / max(1, len(samples)) * 1000,
                **summary(samples)}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of the bot, Synapse, and this process (the 20 clients)."""
        assert self.bot.process is not None
        return {"bot": _proc(self.bot.process.pid)[0],
                "synapse": _proc(self.synapse.pid)[0], "clients": time.process_time()}

    async def step(self, rooms: int) -> None:
        """The figures with the bot in `rooms` family rooms; a start-up-only step (seeded with
        one practitioner a room, to be quick) measures the two kinds of start alone."""
        full = rooms not in self.args.start_only
        await self.grow(rooms, self.args.members if full else 1)
        figures: dict[str, Any] = {"rooms": len(self.council.rooms),
                                   "involvements": self.involvements()}
        figures["start_up"] = await self.start_up()
        if full:
            figures["latency"] = await self.latency(self.args.rounds)
            floor = await self.concurrent_floor(self.args.seconds)
            con = figures["concurrency"] = await self.concurrency(self.args.seconds)
            con["floor"] = floor
            con["p95_vs_single"] = con["p95_ms"] / figures["latency"]["whois"]["p95_ms"]
            con["floor_p95_vs_single"] = floor["p95_ms"] / figures["latency"]["floor"]["p95_ms"]
            con["p95_vs_floor"] = con["p95_ms"] / floor["p95_ms"]
        assert self.bot.process is not None
        figures["peak_rss_mb"] = _proc(self.bot.process.pid)[1]
        await self.bot.stop()
        figures["no_token_start"] = await self.start_without_token(
            figures["start_up"]["plain_no_token_sync_s"])
        self.results["steps"][str(rooms)] = figures
        print_step(figures)
        self.save()

    def save(self) -> None:
        """The figures so far (a long run that fails late keeps its earlier steps)."""
        self.args.json.parent.mkdir(parents=True, exist_ok=True)
        self.args.json.write_text(json.dumps(self.results, indent=2), encoding="utf-8")

    def involvements(self) -> int:
        with sqlite3.connect(self.database) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM involvement WHERE status = 'active'"
                                    ).fetchone()[0])

    async def finale(self) -> None:
        """Mirroring, `!cases` at 384 families, then `!whois` while a sweep runs."""
        add_lead_families(self.database, self.workers[0].user_id, CASES_FAMILIES, self.bot_user)
        await self.bot.start(timeout=300)
        rooms = self.council.rooms[-self.args.mirror_rooms:]
        self.results["mirroring"] = await mirroring.measure(
            self.synapse, self.lead, self.database, rooms, self.args.visitors)
        self.results["cases"] = await self.cases()
        self.save()
        idle = self.results["steps"][str(max(self.args.rooms))]["latency"]["whois"]
        self.results["sweep"] = await self.during_sweep(idle["p95_ms"])

    async def cases(self) -> dict[str, Any]:
        admin = self.workers[0]
        direct = await admin.create_encrypted_room(invite=[self.bot_user])
        await admin.wait_for_membership(direct, self.bot_user, "join", timeout=60)
        await admin.ask(direct, "!help", bot=self.bot_user, timeout=60)
        sent = await admin.send_text(direct, "!cases")
        wanted = [f"LDC-2026-{n:05d}" for n in range(len(self.council.rooms) + 1,
                                                     len(self.council.rooms) + CASES_FAMILIES)]

        def complete() -> bool:
            text = " ".join(n.body for n in admin.notices(direct, self.bot_user))
            return all(reference in text for reference in wanted)

        started = time.perf_counter()
        with contextlib.suppress(AssertionError):
            await admin._wait(complete, 120, "every family in !cases")  # noqa: SLF001
        listed = [n.body for n in admin.notices(direct, self.bot_user) if "LDC-2026-" in n.body]
        return {"families": CASES_FAMILIES, "all_listed": complete(), "messages": len(listed),
                "largest_body_bytes": max((len(body.encode()) for body in listed), default=0),
                "seconds": time.perf_counter() - started, "asked": sent}

    async def during_sweep(self, idle_p95_ms: float) -> dict[str, Any]:
        """`!whois` while a sweep over `--due` involvements writes its batches (from when they
        fall due, up to `sweep_every` before the sweep starts, to when it has finished), then
        while the outbox sends the prompts it queued (for `--seconds` at most), and last how
        fast those go with nobody asking (they give way to answers). Every other client is
        paused, as for the idle figure: twenty clients in this process decrypting the prompts
        in their rooms would be timed too."""
        alice = self.workers[0]
        log_start = self.bot.log_path.stat().st_size

        def swept() -> bool:
            return "prompt sweep:" in self.bot.log_path.read_text()[log_start:]

        async def whois() -> float:
            began = time.perf_counter()
            await alice.ask(self.team_room, "!whois", bot=self.bot_user, timeout=120)
            return time.perf_counter() - began

        writing: list[float] = []
        sending: list[float] = []
        async with self.only([alice]):
            due = make_due(self.database, self.args.due, datetime.now(UTC))
            started = time.perf_counter()
            while not swept() and time.perf_counter() - started < 120:
                writing.append(await whois())
            swept_s = time.perf_counter() - started
            before = await asyncio.to_thread(self.background_sent)
            sending_started = time.perf_counter()
            while (time.perf_counter() - sending_started < self.args.seconds
                   and await asyncio.to_thread(self.unsent)):
                sending.append(await whois())
            sent = await asyncio.to_thread(self.background_sent) - before
            sending_s = time.perf_counter() - sending_started
            before = await asyncio.to_thread(self.background_sent)
            await asyncio.sleep(UNASKED_SECONDS)
            unasked = await asyncio.to_thread(self.background_sent) - before
        result: dict[str, Any] = {
            "due": due, "idle_p95_ms": idle_p95_ms, "swept": swept(), "swept_after_s": swept_s,
            "background_sent_while_asking": sent, "background_sent_per_second": sent / sending_s,
            "background_sent_per_second_unasked": unasked / UNASKED_SECONDS}
        for name, samples in (("during_batches", writing), ("during_sends", sending)):
            if samples:
                figures = summary(samples)
                result[name] = {**figures, "p95_vs_idle": figures["p95_ms"] / idle_p95_ms}
        return result


def _keep_log(log: Path) -> None:
    """The bot's log, kept beside the figures (the run's folder is removed)."""
    Path("build/bench").mkdir(parents=True, exist_ok=True)
    if log.exists():
        shutil.copy(log, "build/bench/council-bot.log")


def _is(event_id: str) -> Callable[[Event], bool]:
    return lambda event: isinstance(event, RoomMessageText) and event.event_id == event_id


def print_step(step: dict[str, Any]) -> None:
    s, n = step["start_up"], step["no_token_start"]
    print(f"\n== bot in {step['rooms']} family rooms, {step['involvements']} involvements ==")
    print(f"  start to first answer {s['first_answer_s']:6.2f} s   plain nio since-token "
          f"full-state sync {s['plain_since_token_sync_s']:5.2f} s   beyond it "
          f"{s['beyond_plain_sync_s']:+5.2f} s   CPU {s['cpu_until_answer_s']:5.2f} s   peak RSS "
          f"{step['peak_rss_mb']:5.0f} MB")
    print(f"  no token: ready {n['ready_s']:6.2f} s, first answer {n['first_answer_s']:6.2f} s"
          f"   plain nio sync with no token {n['plain_no_token_sync_s']:5.2f} s   CPU "
          f"{n['cpu_until_answer_s']:5.2f} s   peak RSS {n['peak_rss_mb']:5.0f} MB")
    if "latency" not in step:
        return
    lat, con = step["latency"], step["concurrency"]
    for name in ("floor", "floor_in_every_room", "whois"):
        f = lat[name]
        print(f"  {name:<19} n={f['n']:<4} min {f['min_ms']:6.1f}  median {f['median_ms']:6.1f}"
              f"  p95 {f['p95_ms']:6.1f}  max {f['max_ms']:6.1f} ms")
    print(f"  own cost {lat['own_cost_ms']:+5.1f} ms at the median, ratio {lat['ratio']:.2f};"
          f" against the echo in every room {lat['own_cost_vs_every_room_ms']:+5.1f} ms")
    print(f"  {'leg (median ms)':<19} {'floor':>7} {'whois':>7} {'beyond':>7}"
          f" {'every room':>11}")
    for leg in (*LEGS, *PARTS):
        echo, bot, every = (lat["legs"][path][leg]["median_ms"]
                            for path in ("floor", "whois", "floor_in_every_room"))
        print(f"  {leg:<19} {echo:7.1f} {bot:7.1f} {bot - echo:+7.1f} {every:11.1f}")
    print(f"  concurrency: {con['answers']} answers, {con['per_second']:.1f}/s, p95 "
          f"{con['p95_ms']:.1f} ms = {con['p95_vs_single']:.2f}x the single-user p95; cores "
          + ", ".join(f"{name} {used:.2f}" for name, used in con["cores_used"].items())
          + f"; bot CPU {con['bot_cpu_per_answer_ms']:.1f} ms an answer")
    floor = con["floor"]
    print(f"  the floor 20 at once: {floor['round_trips']} round trips, "
          f"{floor['per_second']:.1f}/s, p95 {floor['p95_ms']:.1f} ms = "
          f"{con['floor_p95_vs_single']:.2f}x its single p95; the bot's p95 is "
          f"{con['p95_vs_floor']:.2f}x the floor's")


def print_sweep(sweep: dict[str, Any]) -> None:
    print(f"!whois during a sweep over {sweep['due']} due involvements (idle p95 "
          f"{sweep['idle_p95_ms']:.1f} ms; swept {sweep['swept_after_s']:.1f} s after they "
          "fell due, "
          f"{sweep['background_sent_while_asking']} background sends while asking, "
          f"{sweep['background_sent_per_second']:.1f}/s; with nobody asking "
          f"{sweep['background_sent_per_second_unasked']:.1f}/s):")
    for name in ("during_batches", "during_sends"):
        if name in sweep:
            f = sweep[name]
            print(f"  {name:<15} n={f['n']:<4} median {f['median_ms']:6.1f}  p95 "
                  f"{f['p95_ms']:6.1f} ms = {f['p95_vs_idle']:.2f}x idle")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="patchwork-council-") as folder:
        root = Path(folder)
        synapse = LocalSynapse(root / "synapse", port=free_port(), access_log=True)
        await synapse.start()
        suite = Suite(root, synapse, args)
        try:
            await suite.setup()
            for rooms in sorted(set(args.rooms) - set(args.start_only)):
                await suite.step(rooms)
                await suite.bot.stop()
            if args.finale:
                await suite.finale()
                await suite.bot.stop()
                print(f"\nmirroring: {suite.results['mirroring']}")
                print(f"!cases at {CASES_FAMILIES} families: {suite.results['cases']}")
                print_sweep(suite.results["sweep"])
                suite.save()
            for rooms in sorted(args.start_only):
                await suite.step(rooms)
                await suite.bot.stop()
        finally:
            for person in suite.people:
                await person.close()
            await suite.bot.stop()
            await synapse.stop()
            _keep_log(root / "bot.log")
    return suite.results


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("nio").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rooms", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--members", type=int, default=5,
                        help="practitioners besides the lead in each seeded room")
    parser.add_argument("--start-only", type=int, nargs="*", default=[3000],
                        help="steps that measure start-up alone (seeded quickly, last)")
    parser.add_argument("--mirror-rooms", type=int, default=100)
    parser.add_argument("--visitors", type=int, default=5,
                        help="each joins and leaves every mirrored room")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--due", type=int, default=10000)
    parser.add_argument("--no-finale", dest="finale", action="store_false")
    parser.add_argument("--json", type=Path, default=Path("build/bench/council.json"))
    args = parser.parse_args()
    asyncio.run(run(args))
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
