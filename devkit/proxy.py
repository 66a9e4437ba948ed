"""A misbehaving network between the bot and its homeserver, for the fault suite.

`FaultProxy` listens on 127.0.0.1 and forwards every TCP connection to the homeserver. While it
runs, a test switches what it does to the bytes:

- `pass_through()`: forward everything unchanged;
- `delay(ms)`: hold every chunk, in both directions, for `ms` milliseconds;
- `drop(p)`: close a connection at random, with probability `p` per chunk in either direction;
- `cut(p)`: forward only part of a chunk of the server's answer, then close the connection
  (with probability `p` per chunk): the request was handled, the answer never arrives whole;
- `refuse()`: stop listening (new connections are refused) and close those already open;
- `drop_requests(path)`: close the connection instead of forwarding a request whose path
  contains `path` (the server never sees it), and pass everything else.

It is loopback only and bounded in time: connecting upstream gives up after a few seconds, and
the whole proxy closes itself after `lifetime` seconds, so a test that forgets it cannot leave
it running. Nothing here is used by the installed bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from types import TracebackType

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
CHUNK = 65536
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Mode:
    """What the proxy does now; `name` is one of pass, delay, drop, cut, refuse, drop_requests."""

    name: str = "pass"
    delay_ms: float = 0.0
    probability: float = 0.0
    path: str = ""

    def __str__(self) -> str:
        if self.name == "delay":
            return f"delay({self.delay_ms:g} ms)"
        if self.name in ("drop", "cut"):
            return f"{self.name}(p={self.probability:g})"
        if self.name == "drop_requests":
            return f"drop_requests({self.path})"
        return self.name


@dataclass
class ProxyStats:
    """What the proxy did, for a test's report and its checks that a fault really happened."""

    connections: int = 0
    refused_while_closed: int = 0
    dropped: int = 0
    dropped_requests: int = 0
    cut: int = 0
    closed_by_refuse: int = 0
    upstream_failures: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class _Link:
    """One proxied connection: the client's side and the server's side."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        self.closed = False

    def abort(self) -> None:
        """Close both sides at once, without a graceful shutdown (as a broken network would)."""
        self.closed = True
        for writer in (self.client_writer, self.server_writer):
            if writer.transport.is_closing():
                continue  # already closing on purpose (a cut still flushing its part)
            with contextlib.suppress(Exception):
                writer.transport.abort()


class FaultProxy:
    """`async with FaultProxy(port_of_synapse) as proxy:` then give the bot `proxy.url`."""

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = LOOPBACK,
        port: int = 0,
        seed: int = 0,
        lifetime: float = 600.0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = port
        self.lifetime = lifetime
        self.mode = Mode()
        self.stats = ProxyStats()
        self._random = random.Random(seed)  # noqa: S311 - chooses faults, not secrets
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the proxy has not been started")
        return f"http://{LOOPBACK}:{self.port}"

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self._listen()
        self._watchdog = asyncio.create_task(self._expire(), name="proxy lifetime")

    async def close(self) -> None:
        """Stop listening and abort every open connection; safe to call twice."""
        self._closed = True
        self._stop_listening()
        for link in list(self._links):
            link.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _expire(self) -> None:
        await asyncio.sleep(self.lifetime)
        log.warning("fault proxy on port %d reached its lifetime; closing it", self.port)
        await self.close()

    async def _listen(self) -> None:
        if self._server is not None or self._closed:
            return
        self._server = await asyncio.start_server(self._accept, LOOPBACK, self.port)
        if not self.port:
            self.port = int(self._server.sockets[0].getsockname()[1])

    def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # not wait_closed(): from 3.12 it waits for every connection

    # --- modes -----------------------------------------------------------------------------

    async def set_mode(self, mode: Mode) -> None:
        """Switch behaviour; leaving `refuse` listens again on the same port."""
        log.info("fault proxy: %s -> %s", self.mode, mode)
        self.mode = mode
        if mode.name == "refuse":
            self._stop_listening()
            for link in list(self._links):
                self.stats.closed_by_refuse += 1
                link.abort()
        else:
            await self._listen()

    async def pass_through(self) -> None:
        await self.set_mode(Mode())

    async def delay(self, ms: float) -> None:
        await self.set_mode(Mode("delay", delay_ms=ms))

    async def drop(self, probability: float) -> None:
        await self.set_mode(Mode("drop", probability=probability))

    async def cut(self, probability: float = 1.0) -> None:
        await self.set_mode(Mode("cut", probability=probability))

    async def refuse(self) -> None:
        await self.set_mode(Mode("refuse"))

    async def drop_requests(self, path: str) -> None:
        await self.set_mode(Mode("drop_requests", path=path))

    # --- forwarding ------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode.name == "refuse" or self._closed:
            # Accepted in the instant before the listener closed: refuse it all the same.
            self.stats.refused_while_closed += 1
            writer.transport.abort()
            return
        self.stats.connections += 1
        try:
            upstream = await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.upstream_port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            self.stats.upstream_failures += 1
            writer.transport.abort()
            return
        link = _Link((reader, writer), upstream)
        self._links.add(link)
        up = asyncio.create_task(self._pump(link, upstream=True))
        down = asyncio.create_task(self._pump(link, upstream=False))
        self._tasks.update((up, down))
        try:
            await asyncio.gather(up, down, return_exceptions=True)
        finally:
            self._tasks.difference_update((up, down))
            self._links.discard(link)
            link.abort()

    async def _pump(self, link: _Link, *, upstream: bool) -> None:
        """Copy one direction chunk by chunk, applying the mode current at each chunk."""
        reader = link.client_reader if upstream else link.server_reader
        writer = link.server_writer if upstream else link.client_writer
        try:
            while not link.closed:
                chunk = await reader.read(CHUNK)
                if not chunk:
                    with contextlib.suppress(OSError, RuntimeError):
                        writer.write_eof()
                    return
                forwarded = await self._apply(link, chunk, upstream=upstream)
                if forwarded is None:
                    return
                writer.write(forwarded)
                await writer.drain()
                if upstream:
                    self.stats.bytes_up += len(forwarded)
                else:
                    self.stats.bytes_down += len(forwarded)
        except (OSError, ConnectionError):
            link.abort()

    async def _apply(self, link: _Link, chunk: bytes, *, upstream: bool) -> bytes | None:
        """The chunk to forward, or None once the connection has been closed on purpose."""
        mode = self.mode
        if mode.name == "delay":
            await asyncio.sleep(mode.delay_ms / 1000)
        elif mode.name == "drop" and self._random.random() < mode.probability:
            self.stats.dropped += 1
            link.abort()
            return None
        elif (
            mode.name == "cut"
            and not upstream
            and len(chunk) > 1
            and self._random.random() < mode.probability
        ):
            part = chunk[: self._random.randint(1, len(chunk) - 1)]
            self.stats.cut += 1
            link.closed = True
            with contextlib.suppress(Exception):
                link.server_writer.transport.abort()
                # close(), not abort(): the part already written reaches the client first.
                link.client_writer.write(part)
                link.client_writer.close()
            return None
        elif mode.name == "refuse":
            link.abort()
            return None
        elif mode.name == "drop_requests" and upstream and mode.path in _request_path(chunk):
            self.stats.dropped_requests += 1
            link.abort()
            return None
        return chunk


_METHODS = (b"GET ", b"PUT ", b"POST ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ")


def _request_path(chunk: bytes) -> str:
    """The path of the HTTP/1.1 request that starts this chunk, or "" if none starts here
    (aiohttp does not pipeline, so each request begins a chunk of its own)."""
    if not chunk.startswith(_METHODS):
        return ""
    line = chunk.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    return parts[1] if len(parts) >= 2 else ""
