"""The gateway's downstream link: one association to the PACS, re-opened when it fails.

``serve --forward PACS@host:port`` answers its sender only after the PACS has answered, so
:meth:`Forwarder.send` returns only on the downstream's success and raises otherwise. One
association is shared by all upstream associations (a lock serialises C-STOREs on it): PACS
commonly limit associations per peer, and one long-lived association avoids a TCP and TLS
handshake per instance.

Presentation contexts are requested for the SOP classes seen so far; an instance of a new SOP
class (or transfer syntax) re-opens the association with the larger set, up to the 128
contexts an association may carry.
"""

from __future__ import annotations

import copy
import logging
import ssl
import threading

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association

from dicomcrypt.errors import ForwardRefusedError, ForwardUnreachableError
from dicomcrypt.net.address import Peer

__all__ = ["Forwarder"]

LOG = logging.getLogger("dicomcrypt.net.forward")

_NATIVE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
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
                    response = assoc.send_c_store(_as_accepted(assoc, ds, sop_class, tsyntax))
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
        for uid in (tsyntax, *_NATIVE):
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
        # instance goes decompressed where only those were accepted (:func:`_as_accepted`)
        if cx.transfer_syntax[0] == tsyntax or (cx.transfer_syntax[0] in _NATIVE and _decompressible(tsyntax)):
            return True
    return False


def _decompressible(tsyntax: str) -> bool:
    return tsyntax in _NATIVE or UID(tsyntax).is_compressed


def _as_accepted(assoc: Association, ds: Dataset, sop_class: str, tsyntax: str) -> Dataset:
    """``ds``, or a decompressed copy when the peer took ``sop_class`` only uncompressed (a PACS
    that refuses the restored instance's lossless syntax, ``serve --output-syntax``): the same
    values under the same SOP Instance UID."""
    if tsyntax in _NATIVE or not UID(tsyntax).is_compressed:
        return ds
    if any(cx.abstract_syntax == sop_class and cx.transfer_syntax[0] == tsyntax for cx in assoc.accepted_contexts):
        return ds
    plain = copy.deepcopy(ds)
    plain.decompress(generate_instance_uid=False)
    return plain
