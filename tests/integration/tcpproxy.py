"""A TCP proxy in front of the broker or the apiserver, to cut the network under a process
(aio-pika's own tests do the same)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit


def proxied_url(amqp_url: str, port: int) -> str:
    """``amqp_url`` pointed at the proxy's ``port``, with quick reconnects."""
    url = urlsplit(amqp_url)
    netloc = url.netloc.rsplit(":", 1)[0] + f":{port}"
    return urlunsplit(url._replace(netloc=netloc, query="reconnect_interval=0.1"))


class TcpProxy:
    """Forwards TCP connections to ``host:port``.

    ``drop()`` cuts every open connection, like a network fault; ``refuse()`` also stops
    listening, so reconnects fail until ``accept()`` listens again on the same port.
    """

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @classmethod
    def to(cls, amqp_url: str) -> TcpProxy:
        """A proxy to the broker of ``amqp_url``."""
        url = urlsplit(amqp_url)
        assert url.hostname is not None and url.port is not None
        return cls(url.hostname, url.port)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def drop(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def refuse(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.drop()
        if server is not None:
            await server.wait_closed()

    async def accept(self) -> None:
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        """Drop every connection and refuse new ones for good (idempotent)."""
        await self.refuse()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.transport.abort()
