"""Bad input over the wire: each gets its DIMSE status and comment, is quarantined (never filed
among good data), and the receiver keeps serving. Also the stated policies: plain images,
non-image objects, duplicates, a full disk, concurrent associations.
"""

from __future__ import annotations

import copy
import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF

from dicomcrypt import Key, KeyRing, encrypt_dataset
from dicomcrypt import status as st
from dicomcrypt.dicom import PRIVATE_GROUP
from dicomcrypt.net import status as net_st
from helpers.corpus import read_quietly, sample
from helpers.store_clients import associate, good_files, store



def leftovers(out: Path) -> list[Path]:
    """Temporary files a crash could leave: there must never be any."""
    return [p for p in out.rglob(".*") if p.is_file()]


def quarantined(rx) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(rx.quarantine_dir.glob("*.json"))]


def encrypted_ct(key: Key, **changes) -> pydicom.Dataset:
    ds = read_quietly(sample("CT_small.dcm"))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return encrypt_dataset(ds, key=key, mode="standard")


def assert_still_serving(rx, key: Key) -> None:
    fresh = encrypted_ct(key, SOPInstanceUID=generate_uid())
    assert store(rx.port, fresh).Status == 0x0000
    assert any(p.name == f"{fresh.SOPInstanceUID}.dcm" for p in good_files(rx.config.out))


def test_tampered_ciphertext_is_refused_with_a_constant_comment(start_receiver, site_key):
    rx = start_receiver()
    ds = encrypted_ct(site_key)
    envelope = next(e for e in ds.group_dataset(PRIVATE_GROUP) if e.VR == "OB" and e.tag.element > 0xFF)
    blob = bytearray(envelope.value)
    blob[len(blob) // 2] ^= 0x40
    ds[envelope.tag].value = bytes(blob)

    response = store(rx.port, ds)
    assert response.Status == st.DECRYPTION_FAILED.code
    assert response.ErrorComment == "decryption failed: wrong key or altered data"
    assert len(response.ErrorComment) <= st.COMMENT_MAX
    assert good_files(rx.config.out) == []
    (note,) = quarantined(rx)
    assert note["status"] == "0xC001" and note["calling_ae"] == "SENDER" and note["received_utc"]
    assert note["sop_instance_uid"] == ds.SOPInstanceUID
    kept = pydicom.dcmread(rx.quarantine_dir / (Path(sorted(rx.quarantine_dir.glob("*.json"))[0]).stem + ".dcm"))
    assert kept[envelope.tag].value == bytes(blob)  # the evidence, as received
    assert_still_serving(rx, site_key)


def test_edited_bound_attribute_fails_like_tampering(start_receiver, site_key):
    rx = start_receiver()
    ds = encrypted_ct(site_key)
    ds.StudyInstanceUID = generate_uid()  # bound as associated data
    response = store(rx.port, ds)
    assert response.Status == st.DECRYPTION_FAILED.code
    assert good_files(rx.config.out) == []


def test_wrong_key_names_the_key_id_needed(start_receiver, site_key):
    rx = start_receiver()
    other = Key.generate()
    response = store(rx.port, encrypted_ct(other))
    assert response.Status == st.UNKNOWN_KEY.code
    assert other.key_id in response.ErrorComment
    assert good_files(rx.config.out) == []
    assert len(quarantined(rx)) == 1
    assert_still_serving(rx, site_key)


def test_unknown_calling_ae_is_rejected(start_receiver, site_key):
    rx = start_receiver(allowed_aets=frozenset({"TRUSTED"}))
    ds = encrypted_ct(site_key)
    assoc = associate(rx.port, [(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])], calling="INTRUDER")
    assert assoc.is_rejected
    assert store(rx.port, ds, calling="TRUSTED").Status == 0x0000


def c_store_request(ds: pydicom.Dataset, data: bytes) -> C_STORE:
    """A C-STORE-RQ for ``ds``'s SOP class and instance carrying ``data`` as its data set bytes."""
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = ds.SOPClassUID
    request.AffectedSOPInstanceUID = ds.SOPInstanceUID
    request.Priority = 0
    request.DataSet = io.BytesIO(data)
    return request


def test_non_dicom_payload_cannot_be_understood(start_receiver, site_key):
    rx = start_receiver()
    template = encrypted_ct(site_key)
    assoc = associate(rx.port, [(template.SOPClassUID, [template.file_meta.TransferSyntaxUID])])
    assert assoc.is_established
    junk = b"\xff\xfe\x00\x01 this is not a DICOM data set " * 20
    # pynetdicom will not send bytes that do not decode, so send the message ourselves, with the
    # association's reactor paused the way Association.release() pauses it
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.001)
    try:
        assoc.dimse.send_msg(c_store_request(template, junk), assoc.accepted_contexts[0].context_id)
        _, response = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
    assoc.release()

    assert response.Status == st.CANNOT_UNDERSTAND.code
    assert response.ErrorComment
    assert good_files(rx.config.out) == []
    (note,) = quarantined(rx)
    assert note["status"] == "0xC004" and note["calling_ae"] == "SENDER"
    assert_still_serving(rx, site_key)


def test_sender_dying_mid_instance_leaves_nothing(start_receiver, site_key):
    rx = start_receiver()
    ds = encrypted_ct(site_key)
    assoc = associate(rx.port, [(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])])
    assert assoc.is_established
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=False, implicit_vr=False, little_endian=True)
    message = C_STORE_RQ()
    message.primitive_to_message(c_store_request(ds, buffer.getvalue()))
    pdus = []
    for primitive in message.encode_msg(assoc.accepted_contexts[0].context_id, 4096):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        pdus.append(pdu.encode())
    assert len(pdus) > 2
    raw: socket.socket = assoc.dul.socket.socket
    raw.sendall(pdus[0] + pdus[1] + pdus[2][: len(pdus[2]) // 2])  # command, then part of the data set
    raw.shutdown(socket.SHUT_RDWR)
    raw.close()
    assoc.kill()

    assert_still_serving(rx, site_key)
    assert not any(p.name == f"{ds.SOPInstanceUID}.dcm" for p in good_files(rx.config.out))
    assert leftovers(rx.config.out) == []


def test_plain_image_refused_unless_accept_plain(start_receiver, tmp_path):
    plain = read_quietly(sample("CT_small.dcm"))
    rx = start_receiver()
    response = store(rx.port, plain)
    assert response.Status == st.NOT_ENCRYPTED.code
    assert good_files(rx.config.out) == []

    accepting = start_receiver(out=tmp_path / "accepting", accept_plain=True)
    assert store(accepting.port, plain).Status == 0x0000
    (filed,) = good_files(accepting.config.out)
    np.testing.assert_array_equal(pydicom.dcmread(filed).pixel_array, plain.pixel_array)


def test_non_image_object_passes_through(start_receiver):
    rx = start_receiver()
    plan = read_quietly(sample("rtplan.dcm"))
    assert store(rx.port, plan).Status == 0x0000
    (filed,) = good_files(rx.config.out)
    assert pydicom.dcmread(filed) == plan


def test_duplicates_identical_accepted_different_quarantined(start_receiver, site_key):
    rx = start_receiver()
    first = encrypted_ct(site_key)
    assert store(rx.port, first).Status == 0x0000
    (filed,) = good_files(rx.config.out)
    before = filed.stat()

    again = encrypted_ct(site_key)  # same instance, new envelope (fresh nonce), same restored content
    assert store(rx.port, again).Status == 0x0000
    assert filed.stat().st_ino == before.st_ino and filed.stat().st_mtime_ns == before.st_mtime_ns

    different = encrypted_ct(site_key, PatientName="Other^Person")
    response = store(rx.port, different)
    assert response.Status == net_st.DUPLICATE_CONFLICT.code
    assert pydicom.dcmread(filed).PatientName == read_quietly(sample("CT_small.dcm")).PatientName
    assert len(list((rx.quarantine_dir / "duplicates").glob("*.dcm"))) == 1
    counts = rx.studies()[str(first.StudyInstanceUID)]
    assert (counts.received, counts.stored, counts.refused, counts.instances) == (3, 2, 1, 1)


def test_duplicates_replace_policy_keeps_the_old_copy_in_quarantine(start_receiver, site_key):
    rx = start_receiver(duplicates="replace")
    assert store(rx.port, encrypted_ct(site_key)).Status == 0x0000
    assert store(rx.port, encrypted_ct(site_key, PatientName="Other^Person")).Status == 0x0000
    (filed,) = good_files(rx.config.out)
    assert str(pydicom.dcmread(filed).PatientName) == "Other^Person"
    assert len(list((rx.quarantine_dir / "replaced").glob("*.dcm"))) == 1


def test_unwritable_output_answers_out_of_resources(start_receiver, site_key, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    rx = start_receiver(out=blocker, quarantine=tmp_path / "q")
    response = store(rx.port, encrypted_ct(site_key))
    assert response.Status == st.OUT_OF_RESOURCES.code
    assert not any((tmp_path / "q").glob("*"))  # transient: the sender keeps it and retries


@pytest.mark.slow
def test_concurrent_associations_all_accounted_for(start_receiver, site_key):
    rx = start_receiver(max_associations=4)
    base = read_quietly(sample("CT_small.dcm"))
    study = generate_uid()
    batches = []
    for _ in range(4):
        batch = []
        for _ in range(5):
            ds = copy.deepcopy(base)
            ds.StudyInstanceUID, ds.SOPInstanceUID = study, generate_uid()
            batch.append(encrypt_dataset(ds, key=site_key, mode="standard"))
        batches.append(batch)
    statuses: list[int] = []
    lock = threading.Lock()

    def send(batch):
        assoc = associate(rx.port, [(batch[0].SOPClassUID, [batch[0].file_meta.TransferSyntaxUID])])
        assert assoc.is_established
        for ds in batch:
            status = assoc.send_c_store(ds).Status
            with lock:
                statuses.append(status)
        assoc.release()

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert statuses == [0] * 20
    assert len(good_files(rx.config.out)) == 20
    counts = rx.studies()[study]
    assert (counts.received, counts.stored, counts.refused, counts.series, counts.instances) == (20, 20, 0, 1, 20)


def test_status_table_is_consistent():
    codes = [s.code for s in net_st.STORE_STATUSES]
    assert len(codes) == len(set(codes))
    for status in net_st.STORE_STATUSES:
        assert status.meaning and status.when
        if status.code and status.code != 0x0110:
            assert 0xA700 <= status.code <= 0xA7FF or 0xC000 <= status.code <= 0xCFFF
            assert status.retry == (0xA700 <= status.code <= 0xA7FF)
    assert len(st.comment("x" * 200)) == st.COMMENT_MAX
    assert st.comment("a\\b\nc") == "a b c"


@pytest.mark.parametrize("bad", [dict(store="restored", keys=None), dict(out=None), dict(store="sideways")])
def test_contradictory_settings_are_refused(bad, tmp_path, site_key):
    from dicomcrypt.errors import ReceiverConfigError
    from dicomcrypt.net.scp import Receiver, ReceiverConfig

    settings = dict(port=0, keys=KeyRing([site_key]), out=tmp_path)
    settings.update(bad)
    with pytest.raises(ReceiverConfigError):
        Receiver(ReceiverConfig(**settings))


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"])
@pytest.mark.slow
def test_compressed_transfer_syntaxes(name, start_receiver, site_key, tmp_path):
    """Encrypted copies of compressed originals restore exactly; with --accept-plain the plain
    compressed instance is filed as received, still in its compressed syntax."""
    original = read_quietly(sample(name))
    rx = start_receiver()
    assert store(rx.port, encrypt_dataset(original, key=site_key, mode="standard")).Status == 0x0000
    (filed,) = good_files(rx.config.out)
    np.testing.assert_array_equal(pydicom.dcmread(filed).pixel_array, original.pixel_array)

    plain_rx = start_receiver(out=tmp_path / "plain", accept_plain=True)
    assert store(plain_rx.port, original).Status == 0x0000
    (kept,) = good_files(plain_rx.config.out)
    kept_ds = pydicom.dcmread(kept)
    assert kept_ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert kept_ds.PixelData == original.PixelData


def test_associations_beyond_the_limit_are_rejected(start_receiver, site_key):
    rx = start_receiver(max_associations=1)
    ds = encrypted_ct(site_key)
    contexts = [(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])]
    first = associate(rx.port, contexts)
    assert first.is_established
    try:
        second = associate(rx.port, contexts, calling="SECOND")
        assert second.is_rejected
    finally:
        first.release()
    deadline = time.monotonic() + 10  # the released association's thread ends shortly after
    while (again := associate(rx.port, contexts)).is_rejected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert again.is_established  # a slot is free again
    assert again.send_c_store(ds).Status == 0x0000
    again.release()
