"""Hostile peers at ``serve``: a stranger's sealed payload, a damaged private creator, forged
log lines, UIDs that would share or hide a file, a read-only disk; and old archives' retired
Storage SOP classes, which must get in.

A valid envelope for a public recipient needs no secret, so everything here is what anyone who
knows the node's ``dcrecip1...`` string can send.
"""

from __future__ import annotations

import copy
import io
import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomcrypt import KeyRing, encrypt_dataset
from dicomcrypt import status as st
from dicomcrypt.crypto import RecipientKey
from dicomcrypt.dicom import PRIVATE_CREATOR, PRIVATE_GROUP, read_frames
from dicomcrypt.files import write_dicom_atomic
from dicomcrypt.logsafe import SafeFormatter, escape
from dicomcrypt.net.address import parse_peer
from dicomcrypt.net.contexts import RETIRED_IMAGE_STORAGE
from dicomcrypt.net.scu import send
from helpers.corpus import fresh_copy, read_quietly, sample, to_bytes
from helpers.disks import read_only_disk
from helpers.hostile import FOREIGN, sealed_by_stranger
from helpers.store_clients import good_files, store, storescu


@pytest.fixture(scope="module")
def node_key() -> RecipientKey:
    return RecipientKey.generate()


def test_a_strangers_snapshot_with_other_uids_is_refused_and_not_filed(start_receiver, node_key, monkeypatch):
    rx = start_receiver(keys=KeyRing([node_key]))
    hostile = sealed_by_stranger(node_key, monkeypatch, FOREIGN, listed=True)
    response = store(rx.port, hostile)
    assert response.Status == st.ENVELOPE_DAMAGED.code == 0xC003
    assert "not a snapshot dicomcrypt wrote" in response.ErrorComment or "snapshot" in response.ErrorComment
    assert good_files(rx.config.out) == []
    honest = encrypt_dataset(fresh_copy("CT_small.dcm"), recipients=[str(node_key.recipient)], mode="standard")
    assert store(rx.port, honest).Status == 0x0000  # the same node restores honest ones


@pytest.mark.parametrize("store_mode", ["restored", "encrypted"])
def test_a_damaged_private_creator_is_refused_not_filed_as_plain(start_receiver, node_key, store_mode):
    rx = start_receiver(keys=KeyRing([node_key]), store=store_mode, accept_plain=True)
    ds = encrypt_dataset(fresh_copy("CT_small.dcm"), recipients=[str(node_key.recipient)], mode="standard")
    ds = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
    creator = next(t for t in ds._dict if t >> 16 == PRIVATE_GROUP and ds[t].value == PRIVATE_CREATOR)
    ds[creator].value = "DICOMCRYPT 0"  # one flipped bit
    response = store(rx.port, ds)
    assert response.Status == st.ENVELOPE_DAMAGED.code
    assert good_files(rx.config.out) == []


FORGED = "1.2.3\n2026-12-03T00:00:00 INFO dicomcrypt.serve event=store outcome=restored\r\x1b[2K"


def test_a_uid_with_a_newline_cannot_forge_a_log_line(start_receiver, caplog):
    rx = start_receiver(accept_plain=True)
    ds = fresh_copy("CT_small.dcm")
    ds.StudyInstanceUID = FORGED
    with caplog.at_level(logging.INFO, logger="dicomcrypt.serve"):
        assert store(rx.port, ds).Status == 0x0000
    lines = [r for r in caplog.records if r.name == "dicomcrypt.serve" and "event=store" in r.getMessage()]
    (line,) = lines
    text = line.getMessage()  # what any handler writes, not only serve's SafeFormatter
    assert "\n" not in text and "\r" not in text and "\x1b" not in text
    assert len(text.splitlines()) == 1 and "x1b[2K" in text  # shown escaped, on the store line
    (filed,) = good_files(rx.config.out)
    assert filed.parent.parent.parent == rx.config.out and "\n" not in str(filed)


def test_distinct_non_conformant_uids_are_distinct_files_and_none_is_hidden(start_receiver):
    rx = start_receiver(accept_plain=True)
    sent = []
    for uid in ("1.2.3.a", "1.2.3.b", ".1.2.3", "1.2.3.a/.."):
        ds = fresh_copy("CT_small.dcm")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        response = store(rx.port, ds)
        assert response.Status == 0x0000, (uid, response)
        sent.append(uid)
    filed = good_files(rx.config.out)
    assert len(filed) == len(sent)
    assert {pydicom.dcmread(p).SOPInstanceUID for p in filed} == set(sent)
    assert not any(part.startswith(".") for p in filed for part in p.relative_to(rx.config.out).parts)


def retired_us(tmp_path: Path, site_key, sop_class: str) -> Path:
    """A small image of a retired SOP class (old archives), encrypted for the site key."""
    ds = fresh_copy("CT_small.dcm")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.Modality = "US"
    path = tmp_path / "retired" / f"{sop_class}.dcm"
    write_dicom_atomic(encrypt_dataset(ds, key=site_key, mode="standard"), path)
    return path


def test_send_of_retired_image_classes_to_serve_restores_them(start_receiver, site_key, tmp_path):
    rx = start_receiver()
    paths = [retired_us(tmp_path, site_key, uid) for uid in RETIRED_IMAGE_STORAGE]
    report = send(paths, parse_peer(f"RECEIVER@127.0.0.1:{rx.port}"), calling_aet="SENDER")
    assert report.all_arrived, report.summary()
    filed = {str(pydicom.dcmread(p).SOPClassUID): p for p in good_files(rx.config.out)}
    assert set(filed) == set(RETIRED_IMAGE_STORAGE)
    original = read_frames(read_quietly(sample("CT_small.dcm")))[0]
    for path in filed.values():
        np.testing.assert_array_equal(read_frames(pydicom.dcmread(path))[0], original)


@pytest.mark.peer
@pytest.mark.slow
def test_dcmtk_storescu_of_the_retired_ultrasound_class_is_filed(start_receiver, site_key, tmp_path):
    rx = start_receiver()
    path = retired_us(tmp_path, site_key, "1.2.840.10008.5.1.4.1.1.6")
    done = storescu(rx.port, [path], syntax="-R")  # -R: propose the classes of the files given
    assert done.returncode == 0, done.stdout + done.stderr
    (filed,) = good_files(rx.config.out)
    assert pydicom.dcmread(filed).SOPClassUID == "1.2.840.10008.5.1.4.1.1.6"


def test_a_read_only_disk_is_out_of_resources_with_a_clean_comment(start_receiver, site_key, tmp_path):
    with read_only_disk(tmp_path / "ro") as out:
        rx = start_receiver(out=out, quarantine=tmp_path / "q")
        response = store(rx.port, encrypt_dataset(copy.deepcopy(fresh_copy("CT_small.dcm")), key=site_key,
                                                  mode="standard"))
        rx.stop()
    assert response.Status == st.OUT_OF_RESOURCES.code == 0xA700
    assert response.ErrorComment in ("cannot store: Read-only file system", "cannot store: Permission denied")
    assert not any((tmp_path / "q").glob("*"))


def test_escape_and_the_safe_formatter_keep_every_value_on_one_line():
    assert escape("1.2.3") == "1.2.3"
    assert escape("a\nb\r\tc\x1b\x7f\x85\u2028\u202e") == "a\\nb\\r\\tc\\x1b\\x7f\\x85\\u2028\\u202e"
    assert escape(escape("a\nb")) == escape("a\nb")
    record = logging.LogRecord("dicomcrypt.x", logging.WARNING, __file__, 1, "refused %s", (FORGED,), None)
    assert len(SafeFormatter("%(levelname)s %(message)s").format(record).splitlines()) == 1


@pytest.mark.parametrize(
    ("uid", "name"),
    [("1.2.840.113619.2.1", "1.2.840.113619.2.1"), ("", "unknown-instance"), ("1.2.3 \0", "1.2.3")],
)
def test_conformant_uids_keep_their_readable_names(uid, name):
    from dicomcrypt.net.storage import safe_uid

    assert safe_uid(uid, "unknown-instance") == name


def test_non_conformant_uids_get_distinct_safe_names():
    from dicomcrypt.net.storage import instance_path, safe_uid

    hostile = ["1.2.3a", "1.2.3b", "1.2.3_", "..", ".", ".1.2", "../../x", "1.02.3", "1.2.3\n", "1" * 65, "1" * 66,
               "a/b", "a\\b", "1.2.3.", "UNKNOWN-INSTANCE"]
    names = [safe_uid(u, "unknown-instance") for u in hostile]
    assert len(set(names)) == len(names)
    for name in names:
        assert not name.startswith(".") and "/" not in name and "\\" not in name and name.isprintable()
        assert name not in ("unknown-instance", "1.2.3")
    path = instance_path(Path("/out"), "..", "../..", "../../../etc/passwd")
    assert path.parent.parent.parent == Path("/out")


def test_send_report_lines_escape_the_peers_comment_and_file_names():
    from dicomcrypt.net.send_report import InstanceResult, SendReport, instance_line

    failed = InstanceResult(path="a\nFAKE.dcm", study_uid="1.2\n3", status=0xC001, comment="bad\nsent    x.dcm (ok)")
    report = SendReport("RX@host:104", [failed])
    assert all(not line.startswith("sent") for line in report.summary().splitlines())
    assert len(instance_line(failed).splitlines()) == 1
