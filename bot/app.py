"""Builds the running bot from its configuration and runs it until asked to stop."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from nio import AsyncClient, ErrorResponse

from bot.auditkey import load_audit_key
from bot.backoff import Backoff
from bot.backup import StorageLock
from bot.clock import Clock, utc_now
from bot.config import Config
from bot.direct_chats import direct_rooms_of, has_joined
from bot.faults import NO_FAULTS, SWEEP_BATCH, Faults
from bot.files import ensure_private_dir
from bot.health import HealthServer, notify_systemd_when_ready
from bot.housekeeping import prune_history
from bot.matrix import LoginError, NioGateway, connect
from bot.metrics import Metrics
from bot.outbox import OutboxSender
from bot.ratelimit import SenderRateLimit
from bot.retention import log_audit_head, purge_due_families
from bot.router import EventRouter
from bot.scheduler import SweepScheduler
from bot.settings import prompt_settings, team_policy
from bot.sync import SyncLoop
from bot.typing import typing_while
from bot.verification import VerificationRefuser
from commands import build_registry
from rooms.direct_chat import DIRECT_FOR_KEY, awaited_member, on_direct_chat_created
from rooms.exports import Attachment, build_attachment
from rooms.failures import on_item_failed
from rooms.family_room import on_room_created
from rooms.family_view import CARD_KEY, VIEW_KEY, on_card_sent, on_view_room_created
from rooms.policy import TeamPolicy
from rooms.prompts import PromptSettings, held_until, on_message_sent, queued_content, sweep
from storage import Database, OutboxItem, Transaction

log = logging.getLogger(__name__)

DATABASE_FILE = "patchwork.db"
JOIN_WAIT = timedelta(hours=1)
"""How long a message for someone yet to join a new direct chat waits before looking again;
their join releases it at once (rooms.direct_chat.on_joined)."""


async def open_database(config: Config, *, clock: Clock = utc_now) -> Database:
    """The bot's database under `storage.path`, with the audit chain keyed by its HMAC key
    (created on first start). Tools that only read (doctor, audit verify) use it too."""
    ensure_private_dir(config.storage.path)
    key = load_audit_key(config.storage.path, create=True)
    return await Database.open(config.storage.path / DATABASE_FILE, clock=clock, audit_key=key)


def _hold(
    client: AsyncClient, prompts: PromptSettings, item: OutboxItem, now: datetime
) -> tuple[datetime, str] | None:
    """Whether an item must wait, till when and why: a message for someone yet to join the
    direct chat it opens, or a question outside working hours."""
    waiting = awaited_member(item.payload)
    if waiting is not None and not has_joined(client, item.room_id, waiting):
        return now + JOIN_WAIT, "waiting for the recipient to join"
    later = held_until(item.payload, now, prompts)
    return None if later is None else (later, "outside working hours")


async def _attachment(db: Database, client: AsyncClient, item: OutboxItem) -> Attachment:
    """The file an export item stands for, built from the database when it is sent, with
    the bot shown typing in the room meanwhile."""
    async with typing_while(client, item.room_id), db.read() as tx:
        return await build_attachment(tx, item.payload)


async def _content(
    db: Database, item: OutboxItem, prompts: PromptSettings, policy: TeamPolicy
) -> dict[str, Any] | None:
    """The text of a question, reminder or lapse notice the sweep queued by name, written as
    it is sent."""
    async with db.read() as tx:
        return await queued_content(tx, item.room_id, item.payload, prompts, policy)


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
    lock = StorageLock.acquire(config.storage.path)  # restore refuses while it is held
    try:
        db = await open_database(config, clock=clock)
    except BaseException:
        lock.release()
        raise
    metrics = Metrics()
    health = HealthServer(None)
    try:
        health = await HealthServer.start(config.metrics, metrics, db)
        client = await _connect_with_retry(config, stop)
        if client is None:
            return
        client.add_response_callback(metrics.on_response, ErrorResponse)
        try:
            policy = team_policy(config, client.user_id)

            async def room_created(tx: Transaction, item: OutboxItem, room_id: str) -> None:
                if DIRECT_FOR_KEY in item.payload:
                    await on_direct_chat_created(tx, item, room_id)
                elif VIEW_KEY in item.payload:
                    await on_view_room_created(tx, item.payload[VIEW_KEY], room_id)
                else:
                    await on_room_created(tx, item.payload["family_id"], room_id, policy)

            async def message_sent(tx: Transaction, item: OutboxItem, event_id: str | None) -> None:
                if CARD_KEY in item.payload:
                    await on_card_sent(tx, item.payload[CARD_KEY], event_id)
                await on_message_sent(tx, item, event_id)

            async def item_failed(tx: Transaction, item: OutboxItem, error: str) -> None:
                if DIRECT_FOR_KEY in item.payload or VIEW_KEY in item.payload:
                    return  # a welcome that could not reach its direct chat: nobody to tell
                await on_item_failed(tx, item, error, policy)

            outbox = OutboxSender(
                db,
                client,
                on_room_created=room_created,
                on_sent=message_sent,
                on_failed=item_failed,
                hold_until=lambda item, now: _hold(client, prompts, item, now),
                attachment=lambda item: _attachment(db, client, item),
                content=lambda item: _content(db, item, prompts, policy),
                faults=faults,
                metrics=metrics,
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
                metrics=metrics,
            )
            direct_rooms = direct_rooms_of(client)
            sync_loop = SyncLoop(
                client=client,
                db=db,
                router=router,
                outbox=outbox,
                config=config,
                policy=policy,
                faults=faults,
                metrics=metrics,
                verification=VerificationRefuser(client, db, direct_rooms),
            )

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

            async def purge_closed() -> None:
                if await purge_due_families(db, policy):
                    outbox.wake()
                await log_audit_head(db)

            scheduler = SweepScheduler(sweep_prompts, config.prompts.sweep_every)
            purger = SweepScheduler(purge_closed, config.retention.purge_every, name="purge")
            log.info("Patchwork is running as %s (device %s)", client.user_id, client.device_id)
            tasks = [
                asyncio.create_task(sync_loop.run(stop), name="sync"),
                asyncio.create_task(outbox.run(stop), name="outbox"),
                asyncio.create_task(scheduler.run(stop, sync_loop.synced_once), name="prompts"),
                asyncio.create_task(purger.run(stop, sync_loop.synced_once), name="purge"),
                asyncio.create_task(
                    notify_systemd_when_ready(sync_loop.synced_once, stop), name="systemd"
                ),
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
        await health.stop()
        await db.close()
        lock.release()
    log.info("Patchwork stopped")
