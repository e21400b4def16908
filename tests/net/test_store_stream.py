"""The sender's fast path (:mod:`dicomcrypt.net.store_stream`) against real peers on loopback:
the data set arrives byte for byte whatever the peer's PDU size, several in a row on one
association, and TLS associations keep pynetdicom's own path."""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from dicomcrypt.files import write_dicom_atomic
from dicomcrypt.net.address import parse_peer
from dicomcrypt.net.contexts import ContextRequest
from dicomcrypt.net.scu import _application_entity, open_association
from dicomcrypt.net.store_stream import can_stream, store_file
from helpers.dciodvfy import require_tool

from net.conftest import dcmtk_env, free_port, wait_for_port


def _copies(folder: Path, count: int) -> list[Path]:
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    paths = []
    for i in range(count):
        ds = source.copy()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        paths.append(folder / f"ct{i}.dcm")
        write_dicom_atomic(ds, paths[-1])
    return paths


class _Acceptor:
    """A pynetdicom Storage SCP announcing ``max_pdu`` (0: unlimited) that keeps each data set's
    bytes as they came off the wire, keyed by SOP Instance UID."""

    def __init__(self, max_pdu: int) -> None:
        self.received: dict[str, bytes] = {}
        self.pdus = 0
        ae = AE(ae_title="ACCEPTOR")
        ae.maximum_pdu_size = max_pdu
        ae.add_supported_context(CTImageStorage, "1.2.840.10008.1.2.1")
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
            (evt.EVT_C_STORE, self._store), (evt.EVT_PDU_RECV, self._pdu)])
        self.peer = parse_peer(f"ACCEPTOR@127.0.0.1:{self.server.server_address[1]}")
        self._lock = threading.Lock()

    def _store(self, event: evt.Event) -> int:
        with self._lock:
            self.received[str(event.request.AffectedSOPInstanceUID)] = bytes(event.request.DataSet.getvalue())
        return 0x0000

    def _pdu(self, event: evt.Event) -> None:
        self.pdus += 1

    def stop(self) -> None:
        self.server.shutdown()


def _store_all(peer, paths: list[Path]) -> list[int]:
    ae = _application_entity("SENDER", 30)
    assoc = open_association(ae, peer, [ContextRequest(CTImageStorage, ("1.2.840.10008.1.2.1",))])
    try:
        assert can_stream(assoc)
        context_id = assoc.accepted_contexts[0].context_id
        statuses = []
        for msg_id, path in enumerate(paths, start=1):
            meta, offset = split_dataset(path)
            status = store_file(assoc, path, context_id=context_id, msg_id=msg_id,
                                sop_class_uid=str(meta.MediaStorageSOPClassUID),
                                sop_instance_uid=str(meta.MediaStorageSOPInstanceUID), offset=offset)
            statuses.append(int(status.Status))
        assoc.release()  # the reactor, left paused between instances, still releases
        assert assoc.is_released
        return statuses
    finally:
        for leftover in ae.active_associations:
            leftover.abort()


@pytest.mark.parametrize("max_pdu", [0, 4096, 1024 * 1024])
def test_data_sets_arrive_byte_for_byte_in_the_pdu_size_the_peer_accepts(tmp_path: Path, max_pdu: int, monkeypatch):
    from pynetdicom import _config

    # the data set in memory, as it came off the wire (a receiver started earlier in this
    # process may have switched pynetdicom to writing it to a file, process-wide)
    monkeypatch.setattr(_config, "STORE_RECV_CHUNKED_DATASET", False)
    paths = _copies(tmp_path, 3)
    acceptor = _Acceptor(max_pdu)
    try:
        assert _store_all(acceptor.peer, paths) == [0, 0, 0]
    finally:
        acceptor.stop()
    for path in paths:
        meta, offset = split_dataset(path)
        assert acceptor.received[str(meta.MediaStorageSOPInstanceUID)] == path.read_bytes()[offset:]
    if max_pdu == 4096:  # CT_small's 39 kB data set needs ten PDUs of 4 kB, plus the command's
        assert acceptor.pdus >= 3 * 11


@pytest.mark.peer
def test_dcmtk_storescp_files_what_the_fast_path_sent(tmp_path: Path, background):
    exe = require_tool("storescp")
    port, out = free_port(), tmp_path / "out"
    out.mkdir()
    background([exe, "--max-pdu", "4096", "--output-directory", str(out), str(port)], env=dcmtk_env())
    wait_for_port(port)
    paths = _copies(tmp_path, 2)
    assert _store_all(parse_peer(f"STORESCP@127.0.0.1:{port}"), paths) == [0, 0]
    filed = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, out.iterdir())}
    for path in paths:
        sent = pydicom.dcmread(path)
        received = filed[str(sent.SOPInstanceUID)]
        received.file_meta = sent.file_meta  # storescp writes its own File Meta
        for ds in (sent, received):  # and drops the trailing padding CT_small carries
            ds.pop((0xFFFC, 0xFFFC), None)
        assert received == sent  # every element of the data set, pixels included


def test_tls_associations_keep_pynetdicom_s_path(tmp_path: Path, pki):
    import ssl

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    server_ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    ae = AE(ae_title="ACCEPTOR")
    ae.add_supported_context(CTImageStorage, "1.2.840.10008.1.2.1")
    server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=server_ctx)
    try:
        client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
        client_ctx.check_hostname = False
        sender = _application_entity("SENDER", 30)
        peer = parse_peer(f"ACCEPTOR@127.0.0.1:{server.server_address[1]}")
        assoc = open_association(sender, peer, [ContextRequest(CTImageStorage, ("1.2.840.10008.1.2.1",))], client_ctx)
        assert assoc.is_established and not can_stream(assoc)
        assoc.release()
    finally:
        server.shutdown()
