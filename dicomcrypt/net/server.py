"""The receiver's accept path, hardened against peers that connect and then stall.

pynetdicom's ``AssociationServer`` does the TLS handshake in its one accept thread, with no
timeout, so one silent TCP connection stopped every new association (issue 12, defect 3); and
it reads each PDU with a blocking ``recv`` and no deadline, so a peer trickling one byte every
20 s held an association slot for ever (defect 4). :class:`GuardedServer` keeps pynetdicom's
association machinery and changes only the edges:

- the accept thread only accepts; the TLS handshake runs in the connection's own thread, with
  a deadline (:attr:`ConnectionLimits.tls_handshake_timeout`); a failed or timed-out handshake
  is logged with the peer address and closed;
- a peer address holds at most :attr:`ConnectionLimits.max_per_peer` connections (handshaking
  or associated); more are closed at accept, so one host cannot take every association slot;
- each PDU, once it starts, must arrive whole within :attr:`ConnectionLimits.pdu_timeout`, a
  PDU may not announce more than :attr:`ConnectionLimits.max_pdu_bytes`, and no association
  lives longer than :attr:`ConnectionLimits.association_timeout` (:class:`_DeadlineSocket`).
- every connection has TCP_NODELAY: an answer is one small PDU the peer waits for, and Nagle's
  algorithm would hold it for the peer's delayed ACK (up to 40 ms per instance).

The idle time between PDUs is pynetdicom's own ``network_timeout`` (set by the receiver).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pynetdicom import evt
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

if TYPE_CHECKING:
    from pynetdicom.association import Association

__all__ = ["ConnectionLimits", "GuardedServer"]

LOG = logging.getLogger("dicomcrypt.serve")

_RECV_CHUNK = 256 * 1024
"""Most bytes read per ``recv`` call: PDUs are up to 1 MiB now (issue 14), and every call is
Python work; the deadline is checked between calls."""


@dataclass(frozen=True)
class ConnectionLimits:
    """How long and how much one connection may take; the receiver builds it from its config."""

    tls_handshake_timeout: float
    pdu_timeout: float
    association_timeout: float
    max_per_peer: int
    max_pdu_bytes: int


def _peer(address: Any) -> str:
    return f"{address[0]}:{address[1]}"


class _DeadlineSocket(AssociationSocket):
    """pynetdicom's socket wrapper with a deadline on each read and a ceiling on its life.

    The DUL reads a PDU as ``recv(6)`` (type and length) then ``recv(length)``; each call here
    must finish within ``pdu_timeout`` and before the association's ceiling. A short read is
    what pynetdicom already treats as a closed connection, so the association ends cleanly.
    """

    limits: ConnectionLimits
    peer: str
    ends_at: float

    @classmethod
    def adopt(cls, sock: AssociationSocket, limits: ConnectionLimits, peer: str) -> None:
        """Give the socket pynetdicom built for an accepted connection our deadlines (in place:
        building a second one would announce the connection to the state machine twice)."""
        sock.__class__ = cls
        deadline_sock = cast(_DeadlineSocket, sock)
        deadline_sock.limits = limits
        deadline_sock.peer = peer
        deadline_sock.ends_at = time.monotonic() + limits.association_timeout
        if sock.socket is not None:
            sock.socket.settimeout(limits.pdu_timeout)  # sends too: a peer that never reads

    def recv(self, nr_bytes: int) -> bytearray:
        data = bytearray()
        if nr_bytes > self.limits.max_pdu_bytes:
            LOG.warning("event=connection outcome=closed reason=pdu-too-large peer=%s bytes=%d",
                        self.peer, nr_bytes)
            return data
        raw = cast(socket.socket, self.socket)
        ceiling = self.ends_at - time.monotonic()
        deadline = time.monotonic() + min(self.limits.pdu_timeout, ceiling)
        while len(data) < nr_bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                reason = "association-timeout" if ceiling <= self.limits.pdu_timeout else "pdu-timeout"
                LOG.warning("event=connection outcome=closed reason=%s peer=%s", reason, self.peer)
                break
            try:
                raw.settimeout(left)
                chunk = raw.recv(min(_RECV_CHUNK, nr_bytes - len(data)))
            except TimeoutError:
                continue  # the loop's deadline check logs and stops
            if not chunk:
                break
            data.extend(chunk)
        raw.settimeout(self.limits.pdu_timeout)
        return data


class _GuardedHandler(RequestHandler):
    """Runs in the connection's own thread: TLS handshake (with its deadline), then pynetdicom."""

    server: GuardedServer

    def handle(self) -> None:
        try:
            _no_delay(self.request)
            if self.server.ssl_context is not None:
                tls = _handshake(self.server.ssl_context, self.request, self.client_address,
                                 self.server.limits.tls_handshake_timeout)
                if tls is None:
                    return
                self.request = tls
            assoc = self._create_association()  # what pynetdicom's own handle() does, from here on
            _DeadlineSocket.adopt(cast(AssociationSocket, assoc.dul.socket), self.server.limits,
                                  _peer(self.client_address))
            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
            assoc.start()
        finally:
            self.server.release(self.client_address)


def _handshake(ctx: ssl.SSLContext, sock: socket.socket, address: Any, timeout: float) -> ssl.SSLSocket | None:
    """The server side of the TLS handshake on ``sock``, done within ``timeout`` seconds in all
    (a peer that trickles its hello gets no more time than a silent one); ``None`` if it failed."""
    deadline = time.monotonic() + timeout
    try:
        tls = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except OSError as exc:
        LOG.warning("event=tls outcome=failed peer=%s reason=%s", _peer(address), type(exc).__name__)
        _close(sock)
        return None
    tls.setblocking(False)
    while True:
        try:
            tls.do_handshake()
            break
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as want:
            left = deadline - time.monotonic()
            reading = isinstance(want, ssl.SSLWantReadError)
            ready = left > 0 and any(select.select([tls] if reading else [], [] if reading else [tls], [], left))
            if not ready:
                LOG.warning("event=tls outcome=timeout peer=%s seconds=%g", _peer(address), timeout)
                _close(tls)
                return None
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            LOG.warning("event=tls outcome=failed peer=%s reason=%s", _peer(address), reason)
            _close(tls)
            return None
    tls.setblocking(True)
    return tls


def _no_delay(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not a TCP socket
        pass


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded association server with the limits of :class:`ConnectionLimits`.

    Built through ``AE.make_server(..., server_class=GuardedServer, limits=...)``; the
    ``ssl_context`` it is given is used in each connection's thread, not at accept.
    """

    daemon_threads = True

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        self.limits = limits
        self._pending: Counter[str] = Counter()
        """Connections accepted whose association thread has not started yet, by peer host."""
        self._lock = threading.Lock()
        super().__init__(*args, **{**kwargs, "request_handler": _GuardedHandler})

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept only: the TLS handshake waits for the connection's thread."""
        client, address = cast(socket.socket, self.socket).accept()
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Refuse (close at once) a connection from a host that already holds its share."""
        host = str(client_address[0])
        with self._lock:
            held = self._pending[host] + sum(
                1 for assoc in self.active_associations if _requestor_host(assoc) == host
            )
            if held >= self.limits.max_per_peer:
                LOG.warning("event=connection outcome=refused reason=per-peer-limit peer=%s held=%d",
                            _peer(client_address), held)
                return False
            self._pending[host] += 1
        return True

    def release(self, client_address: Any) -> None:
        """The connection's thread is done with accepting it: it is an association now, or closed."""
        host = str(client_address[0])
        with self._lock:
            self._pending[host] -= 1
            if self._pending[host] <= 0:
                del self._pending[host]


def _requestor_host(assoc: Association) -> str | None:
    try:
        return str(assoc.requestor.address)
    except Exception:  # noqa: BLE001 - an association still being built has no address yet
        return None
