"""The receiver's restore pool (issue 14): instances restored in worker processes, many
associations at once, back-pressure instead of loss, refusals and stalls as in-thread.

Real receivers on loopback with ``restore_workers`` set (the other tests restore in the
association's thread for speed), real senders (our ``send``, pynetdicom), real small images.
"""

from __future__ import annotations

import json
import socket
import struct
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


def test_a_sender_stalled_mid_data_set_does_not_hold_up_another(tmp_path, start_receiver, site_key):
    rx = start_receiver(restore_workers=1, pdu_timeout=30.0)
    staller = associate(rx.port, [(CT_STORAGE, [ExplicitVRLittleEndian])], calling="STALLER")
    assert staller.is_established
    raw: socket.socket = staller.dul.socket.socket
    # a P-DATA-TF announcing 64 kB, of which 100 bytes arrive: the data set never completes
    raw.sendall(struct.pack(">BBI", 0x04, 0, 65536) + b"\x00" * 100)
    try:
        encrypted = tmp_path / "one.dcm"
        write_dicom_atomic(encrypt_dataset(fresh_copy("CT_small.dcm"), key=site_key, mode="standard"), encrypted)
        started = time.monotonic()
        assert store(rx.port, encrypted).Status == 0x0000
        assert time.monotonic() - started < 20  # not after the stalled one's 30 s PDU deadline
    finally:
        staller.abort()
    assert len(good_files(rx.config.out)) == 1
