"""A TCP proxy in front of the broker or the apiserver, to make the network misbehave under a
process (aio-pika's own tests do the same).

The proxy forwards raw TCP, so TLS passes through untouched: point a client at ``127.0.0.1:port``
and the apiserver's certificate (SAN ``IP:127.0.0.1``) still verifies. Faults are per direction:
``UP`` is client -> server, ``DOWN`` is server -> client. Each applies to the connections open
now and to those accepted later, until ``heal()``:

- ``delay(s)``: every chunk is forwarded ``s`` seconds after it arrived (order and bandwidth
  kept), a latency spike;
- ``stall()``: bytes are accepted but none forwarded, until ``heal()`` releases them in order
  (a network that stops delivering without closing anything: the hang a timeout must catch);
- ``blackhole()``: bytes are accepted and thrown away (a partition, or one direction of it);
  a connection that lost bytes this way stays silent that way for good, as a TCP connection
  whose peer or path is gone does: only connections opened after ``heal()`` work;
- ``reset()``: every open connection is aborted with a TCP RST;
- ``refuse()`` / ``accept()``: stop and start listening (connection refused), cutting open ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


class Direction(enum.Flag):
    UP = enum.auto()
    """Client to server (requests, publishes)."""
    DOWN = enum.auto()
    """Server to client (responses, deliveries, publisher confirms)."""
    BOTH = UP | DOWN


CHUNK = 65536


@dataclass
class _Faults:
    """The faults of one direction, shared by every connection."""

    delay: float = 0.0
    stalled: bool = False
    blackholed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self) -> None:
        """Wake every pipe waiting on the old faults, so it looks again."""
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass(eq=False)
class _Stream:
    """One direction of one connection; ``doomed`` once a blackhole met it."""

    doomed: bool = False


@dataclass
class ProxyFigures:
    connections: int = 0
    resets: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    dropped: int = 0
    """Bytes thrown away by ``blackhole``."""


class TcpProxy:
    """Forwards TCP connections to ``host:port`` on ``127.0.0.1:port`` (``start()`` picks it)."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._faults = {Direction.UP: _Faults(), Direction.DOWN: _Faults()}
        self._streams: dict[Direction, set[_Stream]] = {Direction.UP: set(), Direction.DOWN: set()}
        self.figures = ProxyFigures()
        self.port = 0
        self._accepted = asyncio.Condition()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def wait_connections(self, count: int) -> None:
        """Until ``count`` connections in all have been accepted (and connected upstream)."""
        async with self._accepted:
            await self._accepted.wait_for(lambda: self.figures.connections >= count)

    # ----------------------------------------------------------------------------- faults

    def _each(self, direction: Direction) -> list[_Faults]:
        return [f for d, f in self._faults.items() if d & direction]

    def delay(self, seconds: float, direction: Direction = Direction.BOTH) -> None:
        """Add ``seconds`` of latency to every chunk going ``direction`` (0 removes it)."""
        for faults in self._each(direction):
            faults.delay = seconds
            faults.touch()

    def stall(self, direction: Direction = Direction.BOTH) -> None:
        """Forward nothing going ``direction`` until ``heal()``; the bytes wait in order."""
        for faults in self._each(direction):
            faults.stalled = True
            faults.touch()

    def blackhole(self, direction: Direction = Direction.BOTH) -> None:
        """Throw away everything going ``direction``: on the connections open now for good, and
        on those opened before ``heal()`` (a partition, or with one direction a one-way cut)."""
        for d, faults in self._faults.items():
            if d & direction:
                faults.blackholed = True
                faults.touch()
                for stream in self._streams[d]:
                    stream.doomed = True

    def heal(self, direction: Direction = Direction.BOTH) -> None:
        """End every fault of ``direction``: stalled bytes flow, latency and blackholes end."""
        for faults in self._each(direction):
            faults.delay = 0.0
            faults.stalled = False
            faults.blackholed = False
            faults.touch()

    def reset(self) -> None:
        """Abort every open connection with a TCP RST (SO_LINGER 0), both sides."""
        for writer in self._writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            self.figures.resets += 1
        self._writers.clear()

    def drop(self) -> None:
        """Cut every open connection (an alias of ``reset``, the name older tests use)."""
        self.reset()

    async def refuse(self) -> None:
        """Stop listening (new connections are refused) and reset the open ones."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.reset()
        if server is not None:
            await server.wait_closed()

    async def accept(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        """Reset every connection and refuse new ones for good (idempotent)."""
        await self.refuse()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---------------------------------------------------------------------------- piping

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Registered before the upstream connect, so that a reset (or refuse) while it connects
        # aborts this connection too: one that slipped through stayed in the operator's pool and
        # kept its probe answering 200 through a "refused" apiserver (a CI failure).
        if self._server is None:  # accepted just before refuse() closed the listener
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        if writer not in self._writers:  # reset while connecting upstream: this one goes too
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.figures.connections += 1
        async with self._accepted:
            self._accepted.notify_all()
        self._writers.add(up_writer)
        for source, sink, direction in (
            (reader, up_writer, Direction.UP),
            (up_reader, writer, Direction.DOWN),
        ):
            task = asyncio.create_task(self._pipe(source, sink, direction))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, direction: Direction
    ) -> None:
        """Read chunks as they come (so bytes are accepted even when stalled); a second task
        forwards each when its faults allow, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        stream = _Stream(doomed=self._faults[direction].blackholed)
        self._streams[direction].add(stream)
        forward = asyncio.create_task(self._forward(queue, sink, direction, stream))
        try:
            while data := await source.read(CHUNK):
                queue.put_nowait((time.monotonic(), data))
            queue.put_nowait((time.monotonic(), b""))
            await forward
        except ConnectionError:
            pass
        finally:
            forward.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await forward
            self._streams[direction].discard(stream)
            # A blackholed stream passes on no close (FIN or RST) either: its sink waits for
            # ever, as the peer of a partitioned connection does.
            if not stream.doomed:
                sink.transport.abort()
                self._writers.discard(sink)

    async def _forward(
        self,
        queue: asyncio.Queue[tuple[float, bytes]],
        sink: asyncio.StreamWriter,
        d: Direction,
        stream: _Stream,
    ) -> None:
        faults = self._faults[d]
        while True:
            arrived, data = await queue.get()
            if not data:
                return
            while not stream.doomed:
                changed = faults.changed
                wait = arrived + faults.delay - time.monotonic()
                if faults.blackholed or (not faults.stalled and wait <= 0):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), None if faults.stalled else wait)
            if stream.doomed:
                self.figures.dropped += len(data)
                continue
            sink.write(data)
            await sink.drain()
            if d is Direction.UP:
                self.figures.bytes_up += len(data)
            else:
                self.figures.bytes_down += len(data)


@contextlib.asynccontextmanager
async def running_proxy(host: str, port: int) -> AsyncIterator[TcpProxy]:
    """A started proxy to ``host:port``, closed on exit."""
    proxy = TcpProxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
