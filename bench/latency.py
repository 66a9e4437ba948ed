"""How long a practitioner waits for the bot, against the homeserver's own round trip.

Starts a local Synapse and the bot process, then measures, in the same run:
- baseline: one practitioner's encrypted message reaching another practitioner (send -> seen);
- `!help`: a command reaching the bot and its encrypted reply reaching the sender.
Prints median and 95th percentile for each, and the bot's own time beyond the two trips through
the homeserver that any command needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from nio import Event

from bot.devserver import LocalSynapse, free_port
from devkit.botproc import BotProcess, write_bot_config
from devkit.practitioner import Practitioner


def _summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{name:<34} n={len(samples):<4} median={statistics.median(samples) * 1000:7.1f} ms"
        f"   p95={p95 * 1000:7.1f} ms"
    )


def _is(event_id: str) -> Callable[[Event], bool]:
    return lambda event: event.event_id == event_id


async def _person(synapse: LocalSynapse, root: Path, name: str) -> Practitioner:
    password = uuid.uuid4().hex
    user_id = await synapse.register_user(f"{name}-{uuid.uuid4().hex[:6]}", password)
    person = Practitioner(synapse.base_url, user_id, password, root / name)
    await person.login()
    return person


async def run(rounds: int, json_path: Path | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="patchwork-bench-") as folder:
        root = Path(folder)
        synapse = LocalSynapse(root / "synapse", port=free_port())
        await synapse.start()
        bot: BotProcess | None = None
        people: list[Practitioner] = []
        try:
            password = uuid.uuid4().hex
            bot_user = await synapse.register_user("patchwork", password)
            config = write_bot_config(
                root / "patchwork.yaml", homeserver_url=synapse.base_url, user_id=bot_user,
                password=password, storage=root / "bot",
                # One sender asks hundreds of times in a row: lift the per-sender command limit.
                extra={"bot": {"command_burst": 10000, "commands_per_minute": 100000}},
            )
            bot = BotProcess(config, root / "bot.log", user_id=bot_user)
            await bot.start()
            alice = await _person(synapse, root, "alice")
            bob = await _person(synapse, root, "bob")
            people = [alice, bob]
            room_id = await alice.create_encrypted_room(invite=[bob.user_id, bot_user])
            await bob.join(room_id)
            await alice.wait_for_membership(room_id, bot_user, "join")
            await alice.ask(room_id, "!help", bot=bot_user)  # warm up key sharing

            baseline: list[float] = []
            command: list[float] = []
            for index in range(rounds):
                started = time.perf_counter()
                event_id = await alice.send_text(room_id, f"hello {index}")
                await bob.wait_for_event(room_id, _is(event_id))
                baseline.append(time.perf_counter() - started)

                started = time.perf_counter()
                await alice.ask(room_id, "!help", bot=bot_user)
                command.append(time.perf_counter() - started)

            print(_summary("baseline: message to a colleague", baseline))
            print(_summary("!help answered by the bot", command))
            # A command needs two trips through the homeserver: to the bot and back.
            overhead = statistics.median(command) - 2 * statistics.median(baseline)
            print(f"{'bot time beyond two round trips':<34} {overhead * 1000:+.1f} ms (median)")
            if json_path is not None:
                _write(json_path, {"baseline_ms": [s * 1000 for s in baseline],
                                   "command_ms": [s * 1000 for s in command],
                                   "beyond_two_trips_ms": overhead * 1000})
        finally:
            for person in people:
                await person.close()
            if bot is not None:
                await bot.stop()
            await synapse.stop()


def _write(path: Path, figures: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2), encoding="utf-8")


def main() -> None:
    logging.getLogger("nio").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", type=Path, default=Path("build/bench/latency.json"))
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.json))


if __name__ == "__main__":
    main()
