"""The connection layer under the HTTP server: a listening socket, the open-file limit, and
uvicorn's httptools protocol with the limits a hostile client needs (header and body
timeouts, a cap on open connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import wire
from .errors import ServerError

__all__ = ["GuardedHTTP", "listen", "raise_fd_limit"]

_TIMEOUT_BODY = wire.encode({"error": {"type": "RequestTimeout", "message": "the request did not arrive in time"}})
_TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                   b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))


class GuardedHTTP(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits it lacks (uvicorn 0.54 times out only
    idle keep-alive connections; a client that sends half a request holds its connection,
    and a file descriptor, forever):

    - a request's headers must arrive within ``header_timeout`` seconds of its first byte
      (or of the connection's opening), its body within ``body_timeout`` more; otherwise
      the connection is closed (with a 408 if no request had started being answered);
    - at most ``max_connections`` are open: a connection beyond them is closed at once.

    uvicorn's own ``limit_concurrency`` is not used: it counts idle connections too and
    answers every request, ``/health`` included, with 503 once the count is reached,
    which is what a slow-client attack wants.
    """

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 4096

    _deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            # Nothing is being answered on this connection: say why it is being closed.
            self.transport.write(_TIMEOUT_ANSWER)
        self.transport.close()

    # uvicorn's protocol narrows asyncio.Protocol's BaseTransport to Transport (with an ignore of its own)
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.close()  # connection_lost removes it from the set
            return
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm(self.header_timeout)  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a ServerError that says what to change."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ServerError(f"port {port!r} is not a TCP port; give a number from 1 to 65535 (0: any free port)")
    if not isinstance(host, str) or not host.strip():
        raise ServerError(f"host {host!r} is not an address; give one such as 127.0.0.1 or 0.0.0.0")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise ServerError(f"cannot listen on {host}:{port}: the host does not resolve ({exc}); "
                          "give an address of this machine such as 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ServerError(f"cannot listen on {host}:{port}: {reason}; stop whatever holds the port or give "
                          "another --port / --host") from None
    sock.set_inheritable(True)
    return sock


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one (each connection holds one);
    the soft limit in force after."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


