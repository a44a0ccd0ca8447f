"""A TCP proxy that adds a fixed delay each way and counts what crosses it: a network between machines,
emulated on one (this kernel has no netem).

    proxy = DelayProxy(upstream_port, delay_s=0.0005)   # 0.5 ms each way: 1 ms more per round trip
    proxy.start()                                        # in a thread of its own; proxy.port is where to connect
    ...; proxy.counters()                                # bytes, chunks and round trips so far
    proxy.stop()

Data keeps its order in each direction; every chunk is forwarded `delay_s` after it arrived, so a request
and its reply take `2 * delay_s` longer than without the proxy, whatever their size.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class Counters:
    """What crossed the proxy: to the server (requests) and back (replies)."""

    up_bytes: int = 0
    up_writes: int = 0
    down_bytes: int = 0
    down_writes: int = 0
    #: requests that waited for a reply: data to the server after data from it (or first) on a connection.
    #: A pipeline of commands, or a request larger than one chunk, is one round trip.
    round_trips: int = 0


class DelayProxy:
    def __init__(self, upstream_port: int, delay_s: float, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.delay_s = delay_s
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._counters = Counters()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"delay-proxy-{self.port}")

    def start(self) -> DelayProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def counters(self) -> Counters:
        with self._lock:
            return Counters(**vars(self._counters))

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        last_up = [False]  # the direction of this connection's latest chunk
        await asyncio.gather(self._pump(client_reader, server_writer, True, last_up),
                             self._pump(server_reader, client_writer, False, last_up), return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool,
                    last_up: list[bool]) -> None:
        """Forward `reader` to `writer`, each chunk `delay_s` after it arrived, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                arrived, chunk = await queue.get()
                if not chunk:
                    writer.close()
                    return
                wait = arrived + self.delay_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()

        delivering = asyncio.ensure_future(deliver())
        try:
            while chunk := await reader.read(1 << 16):
                with self._lock:
                    if up:
                        self._counters.up_bytes += len(chunk)
                        self._counters.up_writes += 1
                        self._counters.round_trips += 0 if last_up[0] else 1
                    else:
                        self._counters.down_bytes += len(chunk)
                        self._counters.down_writes += 1
                    last_up[0] = up
                queue.put_nowait((time.monotonic(), chunk))
        finally:
            queue.put_nowait((time.monotonic(), b""))
            await delivering
