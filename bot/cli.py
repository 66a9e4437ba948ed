"""The `patchwork` command: `run --config FILE` runs the bot, `check-config FILE` validates."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.config import Config, ConfigError, load_config
from bot.crosssigning import CrossSigningError
from bot.files import PrivateDirError
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


Runner = Callable[[Config, asyncio.Event], Awaitable[None]]
"""Runs the bot until the event is set; `devkit.testbot` passes one with a movable clock."""


async def _run_bot(config: Config, stop: asyncio.Event) -> None:
    from bot.app import run_bot

    await run_bot(config, stop=stop)


async def _run(config_path: Path, runner: Runner) -> int:
    config = load_config(config_path)
    _setup_logging(config.logging.level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await runner(config, stop)
    return 0


def main(argv: list[str] | None = None, runner: Runner = _run_bot) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            config = load_config(args.config)
            print(f"{args.config}: OK (bot {config.bot.user_id} on {config.homeserver.url})")
            return 0
        return asyncio.run(_run(args.config, runner))
    except (
        ConfigError,
        CrossSigningError,
        DatabaseTooNewError,
        LoginError,
        PrivateDirError,
    ) as exc:
        # Operator mistakes get a clear message, not a traceback.
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
