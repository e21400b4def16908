"""The gateway's downstream link: one association to the PACS, re-opened when it fails.

:meth:`Forwarder.send` returns only on the downstream's success (or warning) and raises
otherwise. One association carries everything the gateway forwards (a lock serialises C-STOREs
on it): PACS commonly limit associations per peer, and one long-lived association avoids a TCP
and TLS handshake per instance.

Presentation contexts are requested for the SOP classes seen so far; an instance of a new SOP
class (or transfer syntax) re-opens the association with the larger set, up to the 128
contexts an association may carry.

:class:`QueueDrain` is the store-and-forward side: ``serve`` answers its sender once an instance
is in the persistent :class:`~dicomcrypt.net.forward_queue.ForwardQueue`, and the drain, one
thread, sends the queue downstream oldest first through a :class:`Forwarder`, with exponential
backoff: the whole queue waits while the peer is unreachable (a PACS outage can last hours; the
queue keeps everything), one instance waits when the peer refuses it, and after
``max_refusals`` refusals that instance goes to ``QUARANTINE/forward-refused`` with a note.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.association import Association

from dicomcrypt.errors import ForwardRefusedError, ForwardUnreachableError, InvalidInputError
from dicomcrypt.files import read_dicom_bytes
from dicomcrypt.net.address import Peer
from dicomcrypt.net.contexts import NATIVE, fit_to_accepted
from dicomcrypt.net.forward_queue import ForwardQueue, QueueItem
from dicomcrypt.net.storage import Quarantine

__all__ = ["Forwarder", "QueueDrain", "RetryPolicy"]

LOG = logging.getLogger("dicomcrypt.net.forward")

_MAX_CONTEXTS = 128
_SUCCESS_OR_WARNING = frozenset({0x0000, 0x0001, 0x0107, 0x0116})


class Forwarder:
    """C-STORE instances to one downstream peer over one shared, self-healing association."""

    def __init__(
        self,
        peer: Peer,
        *,
        calling_ae_title: str,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.peer = peer
        self._calling = calling_ae_title
        self._ssl_context = ssl_context
        self._timeout = timeout
        self._lock = threading.Lock()
        self._assoc: Association | None = None
        self._wanted: dict[str, list[str]] = {}  # SOP class -> transfer syntaxes, in first-seen order

    def send(self, ds: Dataset) -> int:
        """C-STORE ``ds`` downstream; returns the peer's (success or warning) status.

        A stale association (closed by the peer while idle) is re-opened once and the instance
        sent again. Raises :class:`ForwardUnreachableError` or :class:`ForwardRefusedError`.
        """
        sop_class = str(ds.SOPClassUID)
        tsyntax = str(ds.file_meta.TransferSyntaxUID)
        with self._lock:
            for attempt in (1, 2):
                assoc, fresh = self._ensure_context(sop_class, tsyntax)
                try:
                    response = assoc.send_c_store(fit_to_accepted(assoc.accepted_contexts, ds, sop_class))
                except (RuntimeError, ValueError) as exc:  # association gone, or no usable context
                    response, reason = None, str(exc)
                else:
                    reason = "no response (association aborted or timed out)"
                status = getattr(response, "Status", None) if response is not None else None
                if status is not None:
                    if status in _SUCCESS_OR_WARNING or 0xB000 <= status <= 0xBFFF:
                        return int(status)
                    raise ForwardRefusedError(self.peer.ae_title, int(status))
                self._drop()
                if fresh or attempt == 2:
                    raise ForwardUnreachableError(f"forward to {self.peer}: {reason}")
                LOG.info("forward association to %s was lost; re-opening", self.peer)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Release the downstream association (if any)."""
        with self._lock:
            if self._assoc is not None and self._assoc.is_established:
                self._assoc.release()
            self._assoc = None

    def _ensure_context(self, sop_class: str, tsyntax: str) -> tuple[Association, bool]:
        """An association that can carry this SOP class, and whether it was just opened."""
        if self._assoc is not None and self._assoc.is_established and _accepts(self._assoc, sop_class, tsyntax):
            return self._assoc, False
        syntaxes = self._wanted.setdefault(sop_class, [])
        for uid in (tsyntax, *NATIVE):
            if uid not in syntaxes:
                syntaxes.append(uid)
        self._wanted[sop_class] = self._wanted.pop(sop_class)  # most recent last
        for old in list(self._wanted)[: max(0, len(self._wanted) - _MAX_CONTEXTS)]:
            self._wanted.pop(old)  # forget the least recently needed classes
        if self._assoc is not None and self._assoc.is_established:
            self._assoc.release()
        self._assoc = None
        return self._open(), True

    def _open(self) -> Association:
        ae = AE(ae_title=self._calling)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self._timeout
        for sop_class, syntaxes in self._wanted.items():
            ae.add_requested_context(sop_class, syntaxes)
        tls_args = (self._ssl_context, self.peer.host) if self._ssl_context is not None else None
        try:
            assoc = ae.associate(self.peer.host, self.peer.port, ae_title=self.peer.ae_title, tls_args=tls_args)
        except OSError as exc:
            raise ForwardUnreachableError(f"forward to {self.peer}: {exc}") from None
        if not assoc.is_established:
            what = "rejected the association" if assoc.is_rejected else "is unreachable or aborted"
            raise ForwardUnreachableError(f"forward to {self.peer}: peer {what}")
        self._assoc = assoc
        return assoc

    def _drop(self) -> None:
        if self._assoc is not None and self._assoc.is_established:
            self._assoc.abort()
        self._assoc = None


def _accepts(assoc: Association, sop_class: str, tsyntax: str) -> bool:
    """Whether ``assoc`` accepted a context that can carry ``sop_class`` in ``tsyntax``."""
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax != sop_class:
            continue
        # pynetdicom re-encodes between the native little endian syntaxes itself; a compressed
        # instance goes decompressed where only those were accepted (:func:`~dicomcrypt.net.contexts.fit_to_accepted`)
        if cx.transfer_syntax[0] == tsyntax or (cx.transfer_syntax[0] in NATIVE and _decompressible(tsyntax)):
            return True
    return False


def _decompressible(tsyntax: str) -> bool:
    return tsyntax in NATIVE or UID(tsyntax).is_compressed


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: ``first_s``, doubling per consecutive failure, at most ``max_s``."""

    first_s: float = 1.0
    max_s: float = 300.0
    max_refusals: int = 10
    """Failure statuses from the downstream for one instance before it is given up (quarantined)."""

    def delay(self, failures: int) -> float:
        return float(min(self.max_s, self.first_s * 2 ** min(max(0, failures - 1), 60)))


ForwardListener = Callable[[str, "QueueItem | None"], None]
"""Told of each ``attempt``, ``forwarded``, ``unreachable``, ``refused`` and ``gave_up`` (metrics, counts)."""


class QueueDrain:
    """The thread that empties a :class:`ForwardQueue` into a :class:`Forwarder`; see the module docstring."""

    def __init__(
        self,
        queue: ForwardQueue,
        forwarder: Forwarder,
        *,
        retry: RetryPolicy,
        quarantine: Quarantine,
        listener: ForwardListener | None = None,
        poll_s: float = 1.0,
    ) -> None:
        self.queue = queue
        self.forwarder = forwarder
        self.retry = retry
        self.quarantine = quarantine
        self._listener = listener or (lambda event, item: None)
        self._poll_s = poll_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._peer_failures = 0
        self._peer_retry_at = 0.0
        self.downstream_ok: bool | None = None
        """``None`` until the first attempt; then whether the last contact with the peer worked."""
        self.last_error = ""

    def start(self) -> QueueDrain:
        self._thread = threading.Thread(target=self._run, name="ForwardDrain", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Something was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float) -> None:
        """Finish the instance being sent (so its delivery is recorded: never sent twice), then
        release the downstream association. What is still queued stays for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.forwarder.close()
        self.queue.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            wait = self._peer_retry_at - time.monotonic()
            if wait > 0:
                self._sleep(wait)
                continue
            try:
                items = self.queue.due()
            except Exception as exc:  # noqa: BLE001 - a locked or damaged database: try again later
                LOG.warning("event=forward outcome=error reason=%r", f"cannot read the forward queue: {exc}")
                self._sleep(self._poll_s)
                continue
            if not items:
                self._sleep(self._poll_s)
                continue
            for item in items:
                if self._stopping.is_set() or not self._deliver(item):
                    break

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(min(seconds, self._poll_s))
        self._wake.clear()

    def _deliver(self, item: QueueItem) -> bool:
        """Send one item; False when the peer is unreachable (the rest of the batch waits)."""
        try:
            ds = read_dicom_bytes(item.path.read_bytes(), label=f"queued instance {item.path.name}")
        except (OSError, InvalidInputError) as exc:
            self._give_up(item, None, f"queued copy unreadable: {exc}")
            return True
        self._listener("attempt", item)
        try:
            self.forwarder.send(ds)
        except ForwardUnreachableError as exc:
            self._peer_failures += 1
            delay = self.retry.delay(self._peer_failures)
            self._peer_retry_at = time.monotonic() + delay
            if self.downstream_ok is not False:
                LOG.warning("event=forward outcome=unreachable peer=%s reason=%r retry_in=%.1fs", self.forwarder.peer,
                            str(exc), delay)
            self.downstream_ok, self.last_error = False, str(exc)
            self._listener("unreachable", item)
            return False
        except Exception as exc:  # noqa: BLE001 - a failure status, or a data set pynetdicom cannot send
            reason = str(exc) if isinstance(exc, ForwardRefusedError) else f"cannot send: {type(exc).__name__}"
            self.downstream_ok, self.last_error = True, reason
            if item.attempts + 1 >= self.retry.max_refusals:
                self._give_up(item, ds, f"downstream refused it {item.attempts + 1} times, last: {reason}")
            else:
                delay = self.retry.delay(item.attempts + 1)
                self.queue.retry_later(item, delay, reason)
                LOG.warning("event=forward outcome=refused sop=%s reason=%r retry_in=%.1fs", item.sop_instance_uid,
                            reason, delay)
                self._listener("refused", item)
            return True
        if self.downstream_ok is False:
            LOG.info("event=forward outcome=reachable peer=%s", self.forwarder.peer)
        self._peer_failures, self.downstream_ok, self.last_error = 0, True, ""
        self._listener("forwarded", item)  # counted before the queue shrinks: whoever sees it empty sees the count
        self.queue.done(item)
        LOG.debug("event=forward outcome=forwarded study=%s sop=%s", item.study_uid, item.sop_instance_uid)
        return True

    def _give_up(self, item: QueueItem, ds: object, reason: str) -> None:
        """Move ``item`` out of the queue into ``QUARANTINE/forward-refused`` with a note."""
        try:
            data = item.path.read_bytes() if ds is not None else None
            self.quarantine.keep(data, reason=reason, folder="forward-refused", context={
                "study_uid": item.study_uid, "sop_instance_uid": item.sop_instance_uid,
                "attempts": item.attempts + 1,
            })
        except OSError as exc:
            LOG.error("event=forward outcome=error sop=%s reason=%r", item.sop_instance_uid,
                      f"cannot quarantine a given-up instance: {exc}")
            return  # stays queued: nothing is deleted that was not kept
        self._listener("gave_up", item)
        self.queue.done(item)
        LOG.warning("event=forward outcome=gave_up sop=%s reason=%r", item.sop_instance_uid, reason)
