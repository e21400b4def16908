"""A payload sealed by a stranger: anyone who knows a node's public ``dcrecip1...`` string can
seal one, so its attribute snapshot and its private block are attacker input.

- the snapshot may restore only the attributes the placeholder replaces: one carrying other
  UIDs or a Patient Name is refused (decrypt, receive), never applied;
- the restored identity is the one the envelope authenticated;
- an envelope whose private creator was damaged is an error, never "not encrypted".
"""

from __future__ import annotations

import io
import json
import struct

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomcrypt import dicom, pipeline
from dicomcrypt.crypto import KeyRing, RecipientKey
from dicomcrypt.dicom import attributes
from dicomcrypt.dicom.private_block import PRIVATE_CREATOR, PRIVATE_GROUP
from dicomcrypt.errors import EnvelopeFormatError, PayloadFormatError
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance, inspect_dataset
from dicomcrypt.receive import ReceivePolicy, receive
from dicomcrypt.status import ENVELOPE_DAMAGED
from helpers.corpus import fresh_copy, to_bytes
from helpers.hostile import FOREIGN, sealed_by_stranger, snapshot_with



@pytest.fixture(scope="module")
def node_key() -> RecipientKey:
    return RecipientKey.generate()


@pytest.mark.parametrize("listed", [True, False], ids=["listed-in-header", "only-in-dataset"])
def test_a_snapshot_with_other_uids_and_patient_name_is_refused(node_key, monkeypatch, listed):
    encrypted = sealed_by_stranger(node_key, monkeypatch, FOREIGN, listed=listed)
    with pytest.raises(PayloadFormatError, match="not a snapshot dicomcrypt wrote") as caught:
        decrypt_instance(encrypted, keys=[node_key])
    assert "(0008,0018)" in str(caught.value) and "Mallory" not in str(caught.value)

    decision = receive(to_bytes(encrypted), ReceivePolicy(store="restored", keys=KeyRing([node_key])))
    assert decision.refused and decision.status == ENVELOPE_DAMAGED and decision.data == b""


def test_a_snapshot_cannot_list_a_tag_outside_the_fixed_list_even_when_absent(node_key, monkeypatch):
    encrypted = sealed_by_stranger(node_key, monkeypatch, {}, listed=True)
    ds = Dataset()
    ds.PatientName = "x"
    blob = snapshot_with(ds, {"PatientID": "123"}, listed=True).replace(b'"00100020"', b'"00100010"')
    with pytest.raises(PayloadFormatError, match="(0010,0010)"):
        attributes.restore_attributes(Dataset(), blob)
    restored = decrypt_instance(encrypted, keys=[node_key]).dataset  # an honest snapshot still restores
    assert restored.SOPInstanceUID == encrypted.SOPInstanceUID


@pytest.mark.parametrize("value", ["1.2.840.10008.5.1.4.1.1.2", 12, "not a uid"])
def test_a_snapshot_naming_no_transfer_syntax_is_refused(value):
    ds = fresh_copy("CT_small.dcm")
    blob = attributes.snapshot_attributes(ds)
    start = len(attributes.MAGIC) + 4
    (size,) = struct.unpack_from("<I", blob, len(attributes.MAGIC))
    header = json.loads(blob[start:start + size]) | {"transfer_syntax": value}
    head = json.dumps(header).encode()
    blob = attributes.MAGIC + struct.pack("<I", len(head)) + head + blob[start + size:]
    with pytest.raises(PayloadFormatError, match="transfer syntax"):
        attributes.restore_attributes(ds, blob)


def test_the_restored_identity_must_be_the_bound_one(node_key, monkeypatch):
    """Defence in depth: whatever restore does, decrypt refuses other UIDs than the bound ones."""
    encrypted = encrypt_instance(fresh_copy("CT_small.dcm"), recipients=[str(node_key.recipient)],
                                 mode="standard").dataset
    real = dicom.restore_attributes

    def renaming(ds, blob):
        real(ds, blob)
        ds.SeriesInstanceUID = generate_uid()

    monkeypatch.setattr(pipeline.dicom, "restore_attributes", renaming)
    with pytest.raises(PayloadFormatError, match="Series Instance UID"):
        decrypt_instance(encrypted, keys=[node_key])


def damaged_creator(encrypted: Dataset, how: str) -> Dataset:
    ds = pydicom.dcmread(io.BytesIO(to_bytes(encrypted)))
    creator_tag = next(t for t in ds._dict if t >> 16 == PRIVATE_GROUP and ds[t].value == PRIVATE_CREATOR)
    if how == "flipped bit":
        ds[creator_tag].value = "DICOMCRYPT 0"
    else:
        del ds[creator_tag]
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


@pytest.mark.parametrize("how", ["flipped bit", "removed"])
def test_a_damaged_private_creator_is_an_error_not_a_plain_image(node_key, how):
    encrypted = encrypt_instance(fresh_copy("CT_small.dcm"), recipients=[str(node_key.recipient)],
                                 mode="standard").dataset
    ds = damaged_creator(encrypted, how)
    message = r"dicomcrypt envelope found in \(0011,1\d10\) but its private creator is damaged"
    with pytest.raises(EnvelopeFormatError, match=message):
        decrypt_instance(ds, keys=[node_key])
    with pytest.raises(EnvelopeFormatError, match=message):
        inspect_dataset(ds)
    with pytest.raises(EnvelopeFormatError, match=message):
        encrypt_instance(ds, recipients=[str(node_key.recipient)], mode="standard")
    for policy in (ReceivePolicy(store="restored", keys=KeyRing([node_key])),
                   ReceivePolicy(store="encrypted", accept_plain=True)):
        decision = receive(to_bytes(ds), policy)
        assert decision.refused and decision.status == ENVELOPE_DAMAGED, policy
        assert "private creator is damaged" in str(decision.error)


def test_plain_private_elements_of_group_0011_are_not_mistaken_for_an_envelope():
    ds = fresh_copy("CT_small.dcm")
    block = ds.private_block(PRIVATE_GROUP, "OTHER VENDOR", create=True)
    block.add_new(0x10, "OB", b"DCEX" + bytes(20))
    block.add_new(0x11, "OB", b"DCEV")  # too short to be an envelope start
    assert dicom.read_private_block(ds) is None


def test_inspect_says_the_creator_is_damaged(node_key, tmp_path):
    from dicomcrypt.cli.inspect import format_record, inspect_file

    encrypted = encrypt_instance(fresh_copy("CT_small.dcm"), recipients=[str(node_key.recipient)],
                                 mode="standard").dataset
    path = tmp_path / "damaged.dcm"
    path.write_bytes(to_bytes(damaged_creator(encrypted, "flipped bit")))
    record = inspect_file(path)
    assert record["status"] == "error"
    assert "private creator is damaged" in format_record(record)
