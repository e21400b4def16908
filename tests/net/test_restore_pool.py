"""The receiver's restore pool (issue 14): instances restored in worker processes, many
associations at once, back-pressure instead of loss, refusals and stalls as in-thread.

Real receivers on loopback with ``restore_workers`` set (the other tests restore in the
association's thread for speed), real senders (our ``send``, pynetdicom), real small images.
"""

from __future__ import annotations

import io
import json
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian

from dicomcrypt import encrypt_dataset
from dicomcrypt.files import write_dicom_atomic
from dicomcrypt.net.address import parse_peer
from dicomcrypt.net.scu import send
from dicomcrypt.settings import EncryptionSettings
from helpers.corpus import fresh_copy, read_quietly, sample
from helpers.store_clients import associate, good_files, store

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _originals(folder: Path, count: int) -> dict[str, np.ndarray]:
    """``count`` CT and MR copies under new UIDs written to ``folder``; their pixels by UID."""
    pixels = {}
    for index in range(count):
        ds = fresh_copy(("CT_small.dcm", "MR_small.dcm")[index % 2])
        write_dicom_atomic(ds, folder / f"{index}.dcm")
        pixels[str(ds.SOPInstanceUID)] = ds.pixel_array
    return pixels


def test_more_associations_than_workers_wait_and_every_instance_is_restored(tmp_path, start_receiver, site_key):
    # 1 worker, 1 waiting slot, 4 associations: two of them wait for a slot at any time
    rx = start_receiver(restore_workers=1)
    originals = _originals(tmp_path / "plain", 8)
    settings = EncryptionSettings.build(key=site_key, mode="standard")
    report = send([tmp_path / "plain"], parse_peer(f"RECEIVER@127.0.0.1:{rx.port}"), calling_aet="S",
                  settings=settings, associations=4, workers=1)
    assert report.all_arrived and len(report.results) == 8
    assert all(r.status == 0x0000 for r in report.results)
    filed = good_files(rx.config.out)
    assert len(filed) == 8
    for path in filed:
        restored = pydicom.dcmread(path)
        np.testing.assert_array_equal(restored.pixel_array, originals[str(restored.SOPInstanceUID)])
    counts = rx.studies()
    assert sum(c.stored for c in counts.values()) == 8 and sum(c.refused for c in counts.values()) == 0


def test_a_refusal_in_a_worker_is_answered_and_quarantined_as_in_thread(start_receiver):
    rx = start_receiver(restore_workers=1)
    ds = read_quietly(sample("CT_small.dcm"))
    assert store(rx.port, ds).Status == 0xC005
    [kept] = rx.quarantine_dir.glob("*.dcm")
    assert "PixelData" not in pydicom.dcmread(kept)
    assert json.loads(kept.with_suffix(".json").read_text())["status"] == "0xC005"
    assert not good_files(rx.config.out)


def _c_store_pdus(assoc, ds: pydicom.Dataset) -> list[bytes]:
    """The P-DATA-TF PDUs of a C-STORE request for ``ds``, in 16 kB pieces, as a peer sends them."""
    from pydicom.filewriter import write_dataset
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.pdu import P_DATA_TF

    primitive = C_STORE()
    primitive.MessageID = 1
    primitive.AffectedSOPClassUID = ds.SOPClassUID
    primitive.AffectedSOPInstanceUID = ds.SOPInstanceUID
    primitive.Priority = 2
    buffer = io.BytesIO()
    write_dataset(pydicom.filebase.DicomFileLike(buffer), ds)  # Explicit VR LE, as negotiated
    primitive.DataSet = io.BytesIO(buffer.getvalue())
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    context_id = assoc.accepted_contexts[0].context_id
    pdus = []
    for p_data in message.encode_msg(context_id, 16382):
        pdu = P_DATA_TF()
        pdu.from_primitive(p_data)
        pdus.append(pdu.encode())
    return pdus


def _wait_until_empty(folder: Path, seconds: float = 10.0) -> list[Path]:
    deadline = time.monotonic() + seconds
    while (left := list(folder.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_a_sender_stalled_mid_data_set_does_not_hold_up_another(tmp_path, start_receiver, site_key, monkeypatch):
    received = tmp_path / "arriving"  # where pynetdicom writes data sets as they arrive
    received.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(received))
    rx = start_receiver(restore_workers=1, pdu_timeout=30.0)
    staller = associate(rx.port, [(CT_STORAGE, [ExplicitVRLittleEndian])], calling="STALLER")
    assert staller.is_established
    raw: socket.socket = staller.dul.socket.socket
    for pdu in _c_store_pdus(staller, fresh_copy("CT_small.dcm"))[:-1]:  # all but the last: it stalls
        raw.sendall(pdu)
    try:
        encrypted = tmp_path / "one.dcm"
        write_dicom_atomic(encrypt_dataset(fresh_copy("CT_small.dcm"), key=site_key, mode="standard"), encrypted)
        started = time.monotonic()
        assert store(rx.port, encrypted).Status == 0x0000
        assert time.monotonic() - started < 20  # not after the stalled one's 30 s PDU deadline
    finally:
        staller.abort()
    assert len(good_files(rx.config.out)) == 1
    assert _wait_until_empty(received) == []  # the stalled one's partial data set is deleted too


def test_an_aborted_oversize_instance_leaves_no_partial_file(tmp_path, start_receiver, monkeypatch):
    received = tmp_path / "arriving"
    received.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(received))
    rx = start_receiver(restore_workers=1, accept_plain=True, max_instance_mb=1)
    big = fresh_copy("CT_small.dcm")
    big.Rows = big.Columns = 1024
    big.PixelData = b"\x01\x02" * (1024 * 1024)  # 2 MiB
    assert "Status" not in store(rx.port, big)  # aborted as it passed 1 MiB: no answer
    assert _wait_until_empty(received) == []
    assert not good_files(rx.config.out)
