"""C-STORE of a Part 10 file straight from disk to the socket: the sender's fast path (issue 14).

pynetdicom sends a data set as P-DATA primitives that its DUL thread turns into PDUs one at a
time: a 512x512 CT to a peer that accepts 16 kB PDUs (DCMTK's and pynetdicom's default) is 34
trips through its state machine, events and queues, ~7 ms of Python per instance, and each
C-STORE first waits for the association's reactor thread to notice it must pause (it polls
every millisecond). Here the calling thread writes the request's PDUs itself, in the sizes the
peer accepted, then waits for the answer the DUL thread decodes as usual::

    command set (pynetdicom encodes it) ─┐
    file from the data set's offset ─────┴─> P-DATA-TF PDUs, written in large batches (sendall)
    answer <── pynetdicom's DUL and DIMSE (the state machine stays in Sta6 throughout)

Only for plain TCP: on a TLS socket the DUL thread may read (a TLS 1.3 session ticket, a key
update) while this thread writes, and one OpenSSL connection must not be used from two threads
at once, so TLS associations keep pynetdicom's own path. The message is the same either way
(PS3.7 6.3.1, PS3.8 9.3.5): a command PDV (last fragment), then the data set in PDVs each at
most the peer's maximum PDU length.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from pydicom.dataset import Dataset

if TYPE_CHECKING:
    from pynetdicom.association import Association

__all__ = ["can_stream", "store_file"]

_P_DATA_TF = 0x04
_COMMAND_LAST = 0x03
_DATA = 0x00
_DATA_LAST = 0x02
_PDV_OVERHEAD = 6
"""Per PDV item: 4 bytes item length, 1 context ID, 1 message control header."""
_UNLIMITED_FRAGMENT = 1024 * 1024
"""Fragment size when the peer announced no maximum (0): any size is allowed, this bounds memory."""
_BATCH_BYTES = 1024 * 1024
"""PDUs are joined into writes of about this size: few system calls, bounded memory."""
_PAUSE_POLL_S = 0.0001


def can_stream(assoc: Association) -> bool:
    """Whether :func:`store_file` may write on ``assoc``'s socket (plain TCP, established)."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    return assoc.is_established and isinstance(sock, socket.socket) and not _is_tls(sock)


def _is_tls(sock: socket.socket) -> bool:
    import ssl

    return isinstance(sock, ssl.SSLSocket)


def store_file(
    assoc: Association, path: Path, *, context_id: int, msg_id: int, sop_class_uid: str, sop_instance_uid: str,
    offset: int,
) -> Dataset:
    """C-STORE the data set of the Part 10 file ``path`` (it starts at byte ``offset``, after
    the File Meta) in presentation context ``context_id``; returns the answer's status
    elements as ``send_c_store`` does: an empty data set when no answer came (the connection
    was lost or the DIMSE timeout passed; the association is then aborted)."""
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode

    request = C_STORE()
    request.MessageID = msg_id
    request.AffectedSOPClassUID = sop_class_uid
    request.AffectedSOPInstanceUID = sop_instance_uid
    request.Priority = 0x0002  # low, as pynetdicom's default
    request._dataset_path = (path, offset)  # "a data set follows" (pynetdicom's own file-sending mark)
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    command = encode(message.command_set, True, True)
    assert command is not None, "a C-STORE command set always encodes"

    peer_max = int(assoc.acceptor.maximum_length or 0)
    fragment = peer_max - _PDV_OVERHEAD if peer_max else _UNLIMITED_FRAGMENT
    sock = cast(socket.socket, assoc.dul.socket.socket)  # type: ignore[union-attr]  # can_stream checked it
    with path.open("rb") as handle:  # a file that cannot be opened raises here, before any PDU
        _pause_reactor(assoc)
        try:
            _write_message(sock, handle, offset, command, context_id=context_id, fragment=fragment)
        except OSError:
            assoc.abort()  # the peer cannot have the whole request: this association is done
            return Dataset()
    _, response = assoc.dimse.get_msg(block=True)
    if response is None:
        assoc._handle_no_response()
        return Dataset()
    return assoc._check_received_status(response)


def _pause_reactor(assoc: Association) -> None:
    """Stop the association's reactor thread from reading DIMSE messages (it would take the
    answer off the queue), and leave it stopped: the next C-STORE need not wait for it again,
    and pynetdicom's own calls (``release``, ``abort``, ``send_c_store``) pause and resume it
    themselves. A peer's abort still reaches :func:`store_file`: the state machine puts an
    empty message on the DIMSE queue.

    Stopped means blocked in ``checkpoint.wait()``: pynetdicom's ``_is_paused`` flag alone is
    also true for a moment on every pass through an open checkpoint, and a reactor caught in
    that moment would still take one message (pynetdicom's own send methods have that race).
    """
    checkpoint = assoc._reactor_checkpoint
    checkpoint.clear()
    waiters = getattr(getattr(checkpoint, "_cond", None), "_waiters", None)
    while assoc.is_established and not (assoc._is_paused and (waiters is None or len(waiters) > 0)):
        time.sleep(_PAUSE_POLL_S)


def _pdu(context_id: int, control: int, data: bytes) -> bytes:
    """One P-DATA-TF PDU holding one PDV (PS3.8 9.3.5)."""
    item_length = len(data) + 2
    return struct.pack(">BBLLBB", _P_DATA_TF, 0, item_length + 4, item_length, context_id, control) + data


def _write_message(sock: socket.socket, handle: BinaryIO, offset: int, command: bytes, *, context_id: int,
                   fragment: int) -> None:
    """The command PDU then the data set's PDUs, read from ``handle`` and written in batches."""
    batch = [_pdu(context_id, _COMMAND_LAST, command)]
    size = len(batch[0])
    handle.seek(0, 2)
    left = handle.tell() - offset
    handle.seek(offset)
    while True:
        chunk = handle.read(min(fragment, left))
        left -= len(chunk)
        if len(chunk) == 0 and left > 0:
            raise OSError("the file shrank while it was being sent")
        batch.append(_pdu(context_id, _DATA_LAST if left <= 0 else _DATA, chunk))
        size += len(batch[-1])
        if left <= 0 or size >= _BATCH_BYTES:
            sock.sendall(b"".join(batch))
            batch, size = [], 0
        if left <= 0:
            return
