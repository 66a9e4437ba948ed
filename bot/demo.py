"""`make run`: a local Synapse, the bot and a demo practitioner, with the bot in the foreground.

Everything lives in `.local/` (or $PATCHWORK_DEMO_DIR) and is reused by the next run: the Synapse
data, the generated passwords and pickle key, the bot's store. Ctrl-C stops the bot, then Synapse.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.devserver import LocalSynapse, SynapseError
from bot.files import write_private

log = logging.getLogger(__name__)

SERVER_NAME = "localhost"
BOT_LOCALPART = "patchwork"
DEMO_LOCALPART = "demo"
BOT_DEVICE_ID = "PATCHWORK"
DEFAULT_PORT = 8008
SECRETS_FILE = "demo-secrets.json"  # noqa: S105 (a file name)
CONFIG_FILE = "patchwork.yaml"


@dataclass(frozen=True)
class DemoSecrets:
    """Generated on the first run and kept, so a second run logs in to the same accounts."""

    bot_password: str
    demo_password: str
    pickle_key: str


def load_or_create_secrets(path: Path) -> DemoSecrets:
    """Read the demo's secrets, generating any that are missing (file mode 0600)."""
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
    values = {
        name: stored.get(name) or secrets.token_urlsafe(18)
        for name in ("bot_password", "demo_password", "pickle_key")
    }
    if values != stored:
        write_private(path, json.dumps(values, indent=2, sort_keys=True) + "\n")
    path.chmod(0o600)
    return DemoSecrets(**values)


def bot_config(base_url: str, demo_secrets: DemoSecrets) -> dict[str, object]:
    """The bot's configuration for the demo, as an operator would write it."""
    return {
        "homeserver": {"url": base_url},
        "bot": {
            "user_id": f"@{BOT_LOCALPART}:{SERVER_NAME}",
            "password": demo_secrets.bot_password,
            "device_id": BOT_DEVICE_ID,
        },
        # Relative to the config file's folder, so the file does not depend on where the repo is.
        "storage": {"path": "bot", "pickle_key": demo_secrets.pickle_key},
        "policy": {
            "allowed_servers": [SERVER_NAME],
            "admins": [f"@{DEMO_LOCALPART}:{SERVER_NAME}"],
        },
        "logging": {"level": "INFO"},
    }


def write_bot_config(path: Path, config: dict[str, object]) -> None:
    write_private(
        path,
        "# Written by `make run` (bot/demo.py) on every start; edits are lost.\n"
        + yaml.safe_dump(config, sort_keys=False),
    )


def demo_dir(repo_root: Path | None = None) -> Path:
    """`.local/` in the repository, unless $PATCHWORK_DEMO_DIR names another folder."""
    override = os.environ.get("PATCHWORK_DEMO_DIR")
    if override:
        return Path(override).expanduser().resolve()
    root = repo_root or Path(__file__).resolve().parent.parent
    return root.resolve() / ".local"


def _demo_port() -> int:
    raw = os.environ.get("PATCHWORK_DEMO_PORT", str(DEFAULT_PORT))
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"PATCHWORK_DEMO_PORT must be a port number, not {raw!r}") from None
    if not 0 < port < 65536:
        raise SystemExit(f"PATCHWORK_DEMO_PORT must be between 1 and 65535, not {port}")
    return port


def _instructions(base_url: str, demo_password: str) -> str:
    return f"""
==========================================================================
 Patchwork is starting on a local Synapse.

 Log in from Element (Desktop, or Web on this machine):
   Homeserver:  {base_url}
   Username:    {DEMO_LOCALPART}   (@{DEMO_LOCALPART}:{SERVER_NAME})
   Password:    {demo_password}

 Then create an encrypted room, invite @{BOT_LOCALPART}:{SERVER_NAME},
 and send !help

 Press Ctrl-C to stop the bot and Synapse.
==========================================================================
"""


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # nio logs every request at INFO, which buries the bot's own messages.
    logging.getLogger("nio").setLevel(logging.WARNING)


async def main_demo(repo_root: Path | None = None) -> int:
    """Start Synapse, prepare the accounts and the config, run the bot until Ctrl-C."""
    from bot.app import run_bot
    from bot.config import ConfigError, load_config

    data_dir = await asyncio.to_thread(demo_dir, repo_root)
    port = _demo_port()
    _setup_logging()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True, mode=0o700)
    demo_secrets = await asyncio.to_thread(load_or_create_secrets, data_dir / SECRETS_FILE)
    synapse = LocalSynapse(
        data_dir / "synapse",
        port=port,
        server_name=SERVER_NAME,
        relaxed_rate_limits=True,
        own_process_group=True,
    )
    log.info("starting Synapse on %s (data in %s)", synapse.base_url, synapse.data_dir)
    try:
        await synapse.start()
    except SynapseError as exc:
        print(
            f"Synapse could not start: {exc}\n(Is another `make run` still running? "
            "PATCHWORK_DEMO_PORT chooses another port.)",
            file=sys.stderr,
        )
        return 1
    try:
        await synapse.register_user(BOT_LOCALPART, demo_secrets.bot_password)
        await synapse.register_user(
            DEMO_LOCALPART, demo_secrets.demo_password, displayname="Demo Practitioner"
        )
        config_path = data_dir / CONFIG_FILE
        await asyncio.to_thread(
            write_bot_config, config_path, bot_config(synapse.base_url, demo_secrets)
        )
        config = await asyncio.to_thread(load_config, config_path)
        print(_instructions(synapse.base_url, demo_secrets.demo_password), flush=True)
        if not stop.is_set():
            await run_bot(config, stop=stop)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except Exception:
        log.exception("the demo stopped because of an error")
        return 1
    finally:
        log.info("stopping Synapse")
        await synapse.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


def main() -> None:
    sys.exit(asyncio.run(main_demo()))


if __name__ == "__main__":
    main()
