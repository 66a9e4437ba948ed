"""Builds the running bot from its configuration and runs it until asked to stop."""

from __future__ import annotations

import asyncio
import logging

from nio import AsyncClient

from bot.backoff import Backoff
from bot.clock import Clock, utc_now
from bot.config import Config
from bot.direct_chats import direct_rooms_of
from bot.faults import NO_FAULTS, SWEEP_BATCH, Faults
from bot.files import ensure_private_dir
from bot.housekeeping import prune_history
from bot.matrix import LoginError, NioGateway, connect
from bot.outbox import OutboxSender
from bot.ratelimit import SenderRateLimit
from bot.router import EventRouter
from bot.scheduler import SweepScheduler
from bot.settings import prompt_settings, team_policy
from bot.sync import SyncLoop
from commands import build_registry
from rooms.failures import on_item_failed
from rooms.family_room import on_room_created
from rooms.prompts import held_until, on_message_sent, sweep
from storage import Database, OutboxItem, Transaction

log = logging.getLogger(__name__)

DATABASE_FILE = "patchwork.db"


async def _connect_with_retry(config: Config, stop: asyncio.Event) -> AsyncClient | None:
    """Log in, waiting out a homeserver that is not up yet; a refused login is final."""
    backoff = Backoff(initial=1.0, maximum=30.0)
    while not stop.is_set():
        try:
            return await connect(config)
        except LoginError:
            raise
        except (OSError, TimeoutError) as exc:
            log.warning("homeserver %s not reachable (%s); retrying", config.homeserver.url, exc)
            await backoff.wait(stop)
    return None


async def run_bot(
    config: Config,
    *,
    stop: asyncio.Event,
    clock: Clock = utc_now,
    faults: Faults = NO_FAULTS,
) -> None:
    """Run until `stop` is set; every piece is built here and handed down (no globals).
    `clock` and `faults` are for tests (`devkit.testbot`): the CLI passes neither."""
    ensure_private_dir(config.storage.path)
    db = await Database.open(config.storage.path / DATABASE_FILE, clock=clock)
    try:
        client = await _connect_with_retry(config, stop)
        if client is None:
            return
        try:
            policy = team_policy(config, client.user_id)

            async def room_created(tx: Transaction, item: OutboxItem, room_id: str) -> None:
                await on_room_created(tx, item.payload["family_id"], room_id, policy)

            async def item_failed(tx: Transaction, item: OutboxItem, error: str) -> None:
                await on_item_failed(tx, item, error, policy)

            outbox = OutboxSender(
                db,
                client,
                on_room_created=room_created,
                on_sent=on_message_sent,
                on_failed=item_failed,
                hold_until=lambda item, now: held_until(item.payload, now, prompts),
                faults=faults,
            )
            registry = build_registry()
            prompts = prompt_settings(config)
            router = EventRouter(
                client=client,
                registry=registry,
                gateway=NioGateway(client),
                policy=policy,
                prompts=prompts,
                rate_limit=SenderRateLimit(
                    burst=config.bot.command_burst,
                    per_second=config.bot.commands_per_minute / 60,
                ),
            )
            sync_loop = SyncLoop(
                client=client,
                db=db,
                router=router,
                outbox=outbox,
                config=config,
                policy=policy,
                faults=faults,
            )
            direct_rooms = direct_rooms_of(client)

            async def sweep_prompts() -> None:
                await prune_history(db)
                report = await sweep(
                    db,
                    prompts,
                    policy,
                    direct_rooms=direct_rooms,
                    after_batch=lambda: faults.reached(SWEEP_BATCH),
                )
                if report.queued:
                    outbox.wake()

            scheduler = SweepScheduler(sweep_prompts, config.prompts.sweep_every)
            log.info("Patchwork is running as %s (device %s)", client.user_id, client.device_id)
            tasks = [
                asyncio.create_task(sync_loop.run(stop), name="sync"),
                asyncio.create_task(outbox.run(stop), name="outbox"),
                asyncio.create_task(scheduler.run(stop, sync_loop.synced_once), name="prompts"),
            ]
            stop_task = asyncio.create_task(stop.wait())
            await asyncio.wait(
                [*tasks, stop_task], return_when=asyncio.FIRST_COMPLETED
            )
            stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for task, result in zip(tasks, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    log.error("%s loop failed", task.get_name(), exc_info=result)
                    raise result
        finally:
            await client.close()
    finally:
        await db.close()
    log.info("Patchwork stopped")
