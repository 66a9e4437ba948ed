"""`/healthz` and `/metrics` on `metrics.listen` (off unless configured), and systemd's
readiness notice.

`/healthz` answers 503 until the first sync response has been processed, and again whenever
no sync has completed for longer than `metrics.max_sync_lag` (a homeserver that is down, a
bot that is stuck); 200 otherwise, like Draupnir's. `/metrics` is the Prometheus text format
(`bot.metrics`). Requests are not logged: a scrape every 15 seconds is routine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from aiohttp import web

from bot.config import MetricsConfig
from bot.metrics import Metrics
from storage import Database

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HealthServer:
    """The HTTP endpoint; `start` returns one that does nothing when `listen` is not set."""

    def __init__(self, runner: web.AppRunner | None) -> None:
        self._runner = runner

    @classmethod
    async def start(cls, config: MetricsConfig, metrics: Metrics, db: Database) -> HealthServer:
        if config.listen is None:
            return cls(None)
        max_lag = config.max_sync_lag.total_seconds()

        async def healthz(_: web.Request) -> web.Response:
            healthy, why = metrics.health(max_lag)
            return web.Response(status=200 if healthy else 503, text=why + "\n")

        async def prometheus(_: web.Request) -> web.Response:
            body = await metrics.render(db)
            return web.Response(body=body, headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", prometheus)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, config.host, config.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        log.info("serving /healthz and /metrics on %s", config.listen)
        return cls(runner)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def notify_systemd_when_ready(ready: asyncio.Event, stop: asyncio.Event) -> None:
    """Tell systemd (`Type=notify`) the bot is up once `ready` is set, then wait for `stop`
    (so it can run beside the bot's other loops). One datagram on a local socket, sent without
    blocking; nothing is sent without NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    waiter = asyncio.ensure_future(ready.wait())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if address and ready.is_set() and not stop.is_set():
        if address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK) as sock:
                sock.sendto(b"READY=1", address)
        except OSError as exc:
            log.warning("could not tell systemd the bot is ready: %s", exc)
    await stopper
