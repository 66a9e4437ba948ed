"""The `patchwork` command: `run --config FILE` runs the bot, `check-config FILE` validates,
`doctor --config FILE` checks a deployment, `backup --config FILE --to DIR` copies its data
while it runs and `restore --from DIR --config FILE` puts a copy back while it is stopped;
`audit verify`, `practitioner erase` and `roster export` are the governance tools;
`fingerprint --config FILE` prints the bot's master cross-signing key for an out-of-band check."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.auditkey import AuditKeyError
from bot.backup import BackupError, StorageInUse
from bot.config import Config, ConfigError, load_config
from bot.crosssigning import CrossSigningError
from bot.files import PrivateDirError
from bot.logs import setup_logging
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
    doctor = sub.add_parser("doctor", help="check that the bot and its data are healthy")
    doctor.add_argument("--config", required=True, type=Path, help="path to the YAML configuration")
    backup = sub.add_parser("backup", help="copy the bot's data (safe while it runs)")
    backup.add_argument("--config", required=True, type=Path, help="path to the YAML configuration")
    backup.add_argument("--to", required=True, type=Path, help="a new folder for the copy")
    restore = sub.add_parser("restore", help="put a backup in place (the bot must be stopped)")
    restore.add_argument("--from", dest="source", required=True, type=Path, help="a backup folder")
    restore.add_argument(
        "--config", required=True, type=Path, help="path to the YAML configuration"
    )
    fingerprint = sub.add_parser(
        "fingerprint", help="print the bot's master cross-signing key, to check its identity"
    )
    fingerprint.add_argument(
        "--config", required=True, type=Path, help="path to the YAML configuration"
    )
    _governance_parsers(sub)
    return parser


def _governance_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="check the audit trail")
    audit_sub = audit.add_subparsers(dest="action", required=True)
    verify = audit_sub.add_parser("verify", help="verify the whole audit chain")
    verify.add_argument("--config", required=True, type=Path, help="path to the YAML configuration")
    practitioner = sub.add_parser("practitioner", help="a practitioner's data")
    practitioner_sub = practitioner.add_subparsers(dest="action", required=True)
    erase = practitioner_sub.add_parser(
        "erase", help="delete a practitioner's contact details (none may be active)"
    )
    erase.add_argument("user_id", help="the practitioner's Matrix id, e.g. @sam:example.org")
    erase.add_argument("--config", required=True, type=Path, help="path to the YAML configuration")
    roster = sub.add_parser("roster", help="the roster of every family")
    roster_sub = roster.add_subparsers(dest="action", required=True)
    export = roster_sub.add_parser("export", help="print every involvement as CSV or JSON")
    export.add_argument("--config", required=True, type=Path, help="path to the YAML configuration")
    export.add_argument("--format", choices=("csv", "json"), default="csv")


async def _governance(args: argparse.Namespace) -> int:
    from bot import operator

    config = load_config(args.config)
    if args.command == "audit":
        outcome = await operator.verify_audit(config)
    elif args.command == "practitioner":
        outcome = await operator.erase_practitioner(config, args.user_id)
    else:
        outcome = await operator.export_roster(config, args.format)
    print(outcome.text, file=sys.stdout if outcome.status == 0 else sys.stderr)
    return outcome.status


Runner = Callable[[Config, asyncio.Event], Awaitable[None]]
"""Runs the bot until the event is set; `devkit.testbot` passes one with a movable clock."""


async def _run_bot(config: Config, stop: asyncio.Event) -> None:
    from bot.app import run_bot

    await run_bot(config, stop=stop)


async def _run(config_path: Path, runner: Runner) -> int:
    config = load_config(config_path)
    setup_logging(config.logging.level, config.logging.format)
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
        if args.command in ("doctor", "backup", "restore"):
            return _operate(args)
        if args.command == "fingerprint":
            from bot.verification import fingerprint_text

            print(fingerprint_text(load_config(args.config)), end="")
            return 0
        if args.command in ("audit", "practitioner", "roster"):
            return asyncio.run(_governance(args))
        return asyncio.run(_run(args.config, runner))
    except (
        AuditKeyError,
        BackupError,
        StorageInUse,
        ConfigError,
        CrossSigningError,
        DatabaseTooNewError,
        LoginError,
        PrivateDirError,
    ) as exc:
        # Operator mistakes get a clear message, not a traceback.
        print(str(exc), file=sys.stderr)
        return 2


def _operate(args: argparse.Namespace) -> int:
    from bot import backup, doctor

    if args.command == "doctor":
        text, status = doctor.report(asyncio.run(doctor.run_checks(args.config)))
        print(text)
        return status
    config = load_config(args.config)
    if args.command == "backup":
        made = backup.backup(config.storage.path, args.to)
        print(f"backed up {len(made.files)} files from {config.storage.path} to {made.folder}")
        return 0
    done = backup.restore(args.source, config.storage.path)
    if done.moved_aside is not None:
        print(f"moved the previous data to {done.moved_aside}")
    print(f"restored {len(done.files)} files to {done.folder}; check with `patchwork doctor`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
