"""The socket `aios serve` listens on, bound before the bot starts: a process that cannot listen must exit
before its scheduler's jobs or its recovery have run, and say which of its options to change."""

from __future__ import annotations

import errno
import socket

BACKLOG = 128  # aiohttp's own default for the sockets it binds


class CannotListen(Exception):
    """The address cannot be listened on; the message says what to change."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A non-blocking socket listening on ``host``:``port`` (port 0: one the system picks)."""
    if not 0 <= port <= 65535:
        raise CannotListen(f"cannot listen on port {port}: a port is a number from 0 to 65535; check --port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise CannotListen(why_not(host, port, exc)) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # as asyncio does: a restart rebinds at once
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise CannotListen(why_not(host, port, exc)) from None
    sock.setblocking(False)
    return sock


def why_not(host: str, port: int, exc: OSError) -> str:
    """What to change, by what the system said."""
    where = f"cannot listen on {host}:{port} ({exc.strerror or exc})"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {host} is not an address of this machine; check --host"
    if exc.errno == errno.EACCES:
        return f"{where}: port {port} needs privileges; choose one above 1024 with --port (or PORT)"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}; choose another --port (or PORT), or stop what is listening there"
    return where


def url(sock: socket.socket) -> str:
    """Where the socket is reached over HTTP, with the port the system picked when asked for port 0."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
