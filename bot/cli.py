"""The `patchwork` command: `run --config FILE` runs the bot, `check-config FILE` validates."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from bot.clock import CLOCK_FILE_ENV, FileClock
from bot.config import ConfigError, load_config
from bot.matrix import LoginError
from storage import DatabaseTooNewError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patchwork", description="Patchwork: keeps the team around a family connected."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the bot")
    run.add_argument("--config", required=True, type=Path, help="path to the YAML configuration")
    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("config", type=Path, help="path to the YAML configuration")
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # nio logs every request at INFO; keep the operator's log readable.
    logging.getLogger("nio").setLevel(max(logging.WARNING, getattr(logging, level)))


async def _run(config_path: Path) -> int:
    from bot.app import run_bot

    config = load_config(config_path)
    _setup_logging(config.logging.level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    clock_path = os.environ.get(CLOCK_FILE_ENV)
    if not clock_path:
        await run_bot(config, stop=stop)
        return 0
    # Tests only: the integration tests move a running bot's time through this file.
    logging.getLogger(__name__).warning(
        "%s is set: the time comes from %s (for tests only)", CLOCK_FILE_ENV, clock_path
    )
    clock = FileClock(Path(clock_path))
    await asyncio.to_thread(clock.load)
    watcher = asyncio.create_task(clock.watch(stop), name="test clock")
    try:
        await run_bot(config, stop=stop, clock=clock)
    finally:
        stop.set()
        await watcher
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            config = load_config(args.config)
            print(f"{args.config}: OK (bot {config.bot.user_id} on {config.homeserver.url})")
            return 0
        return asyncio.run(_run(args.config))
    except (ConfigError, DatabaseTooNewError, LoginError) as exc:
        # Operator mistakes get a clear message, not a traceback.
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
