"""The hook's splice: only the worked-on elements go through pydicom, the others' bytes are copied.

The reference is the same hook with ``splice=False`` (every element parsed, copied and written):
restored instances must be the same bytes, encrypted ones the same elements but the envelope.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomcrypt import Key
from dicomcrypt.dicom.private_block import PRIVATE_GROUP
from dicomcrypt.integrations.hooks import StorageHook
from dicomcrypt.integrations.splice import Spliced, is_worked_on
from helpers.corpus import fresh_copy, to_bytes


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate()


@pytest.fixture(scope="module")
def restorers(key: Key) -> dict[bool, StorageHook]:
    return {splice: StorageHook("restore", keys=key, preload=False, splice=splice) for splice in (True, False)}


def with_nested_sequences(name: str) -> pydicom.Dataset:
    """A test image with an undefined-length sequence of undefined-length items, one of them
    holding a sequence again, beside a defined-length sequence of defined-length items."""
    ds = fresh_copy(name)
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator = "113691", "DCM"
    item = Dataset()
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    for parent, keyword in ((ds, "ReferencedImageSequence"), (item, "PurposeOfReferenceCodeSequence")):
        parent[keyword].is_undefined_length = True
    for element in (item, inner):
        element.is_undefined_length_sequence_item = True
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D4000", "SRT", "Abdomen"
    ds.AnatomicRegionSequence = Sequence([code])  # pydicom writes defined lengths by default
    return ds


def elements_but_envelope(data: bytes) -> dict[int, object]:
    ds = pydicom.dcmread(io.BytesIO(data))
    return {tag: ds[tag].value for tag in ds.keys() if not (tag.group == PRIVATE_GROUP and tag.element >= 0x1000)}


@pytest.mark.parametrize(("name", "mode"), [("CT_small.dcm", "standard"), ("CT_small.dcm", "lossless"),
                                            ("SC_rgb.dcm", "standard"), ("emri_small.dcm", "standard")])
def test_spliced_results_equal_the_whole_data_set_path(
    key: Key, restorers: dict[bool, StorageHook], name: str, mode: str
) -> None:
    plain = to_bytes(with_nested_sequences(name))
    assert Spliced.of(plain) is not None  # the fast path is the one under test
    encrypted = {
        splice: StorageHook("encrypt", keys=key, encrypt_mode=mode, preload=False, splice=splice).process(plain)
        for splice in (True, False)
    }
    assert elements_but_envelope(encrypted[True].data) == elements_but_envelope(encrypted[False].data)
    original = pydicom.dcmread(io.BytesIO(plain))
    for sealed in (encrypted[True].data, encrypted[False].data):
        restored = {splice: restorers[splice].process(sealed) for splice in (True, False)}
        assert restored[True].action == restored[False].action == "decrypted"
        assert restored[True].data == restored[False].data
        back = pydicom.dcmread(io.BytesIO(restored[True].data))
        np.testing.assert_array_equal(back.pixel_array, original.pixel_array)
        assert back.ReferencedImageSequence[0].PurposeOfReferenceCodeSequence[0].CodeValue == "113691"
    assert back.AnatomicRegionSequence[0].CodeMeaning == "Abdomen"


def test_elements_outside_the_worked_on_set_keep_their_received_bytes(
    key: Key, restorers: dict[bool, StorageHook]
) -> None:
    ds = fresh_copy("CT_small.dcm")
    ds.InstitutionName = "General Hospital"  # rewritten below with a vendor's extra padding
    data = to_bytes(ds).replace(b"LO\x10\x00General Hospital", b"LO\x10\x00General Hosp    ")
    sealed = StorageHook("encrypt", keys=key, encrypt_mode="standard", preload=False).process(data).data
    restored = restorers[True].process(sealed).data
    assert b"General Hosp    " in sealed and b"General Hosp    " in restored
    received, out = Spliced.of(data), Spliced.of(restored)
    assert received is not None and out is not None
    for spliced in (received, out):  # the scan finds exactly pydicom's top-level elements
        assert [tag for tag, _, _ in spliced.elements] == list(pydicom.dcmread(io.BytesIO(spliced.data)).keys())
    copied = {tag: data[b:e] for tag, b, e in received.elements if not is_worked_on(tag)}
    assert copied == {tag: restored[b:e] for tag, b, e in out.elements if not is_worked_on(tag)}


def test_what_does_not_split_takes_the_whole_data_set_path(key: Key) -> None:
    little = to_bytes(fresh_copy("CT_small.dcm"))
    big = little.replace(ExplicitVRLittleEndian.encode() + b"\0", ExplicitVRBigEndian.encode() + b"\0", 1)
    assert big != little and Spliced.of(big) is None
    ds = fresh_copy("CT_small.dcm")
    ds.InstitutionName = "General Hospital"
    explicit = to_bytes(ds)
    assert Spliced.of(explicit) is not None
    assert Spliced.of(explicit[:-7]) is None  # Pixel Data runs past the end
    assert Spliced.of(explicit.replace(b"LO\x10\x00General", b"lo\x10\x00General")) is None  # not a VR
    assert Spliced.of(b"not dicom at all") is None


def test_an_implicit_vr_original_is_restored_implicit_vr_around_the_kept_bytes(
    key: Key, restorers: dict[bool, StorageHook]
) -> None:
    ds = with_nested_sequences("CT_small.dcm")
    ds.InstitutionName = "General Hospital"
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit = to_bytes(ds)
    sealed = StorageHook("encrypt", keys=key, encrypt_mode="standard", preload=False).process(implicit).data
    assert Spliced.of(sealed) is not None  # sent Explicit VR: the restore splices
    sealed = sealed.replace(b"LO\x10\x00General Hospital", b"LO\x10\x00General Hosp    ")  # not bound
    restored = {splice: restorers[splice].process(sealed).data for splice in (True, False)}
    assert b"\x10\x00\x00\x00General Hosp    " in restored[True]  # kept bytes, implicit header
    back, reference = (pydicom.dcmread(io.BytesIO(restored[splice])) for splice in (True, False))
    assert back.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian == reference.file_meta.TransferSyntaxUID
    assert back.file_meta == reference.file_meta and list(back.keys()) == list(reference.keys())
    for tag in back.keys():
        assert back[tag].value == reference[tag].value, tag
    np.testing.assert_array_equal(back.pixel_array, ds.pixel_array)
    assert back.ReferencedImageSequence[0].PurposeOfReferenceCodeSequence[0].CodeValue == "113691"
    assert back.AnatomicRegionSequence[0].CodeMeaning == "Abdomen"


def test_an_implicit_vr_instance_is_encrypted_around_its_kept_bytes(
    key: Key, restorers: dict[bool, StorageHook]
) -> None:
    """Received Implicit VR, stored Explicit VR: the kept elements get their dictionary VR
    (private ones UN, their bytes as received), sequences converted item by item."""
    ds = with_nested_sequences("CT_small.dcm")
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit = to_bytes(ds)
    spliced = Spliced.of(implicit)
    assert spliced is not None and spliced.implicit
    hooks = {splice: StorageHook("encrypt", keys=key, encrypt_mode="standard", preload=False, splice=splice)
             for splice in (True, False)}
    encrypted = {splice: hook.process(implicit) for splice, hook in hooks.items()}
    fast, whole = (pydicom.dcmread(io.BytesIO(encrypted[splice].data)) for splice in (True, False))
    assert list(fast.keys()) == list(whole.keys())
    private = [tag for tag in fast.keys() if tag.group % 2 and tag.group != PRIVATE_GROUP and tag.element >= 0x1000]
    assert private  # CT_small carries a vendor's private elements
    out = Spliced.of(encrypted[True].data)
    assert out is not None and not out.implicit
    written = {tag: encrypted[True].data[b:e] for tag, b, e in out.elements}
    for tag in fast.keys():
        if tag in private:  # VR UN, 12-byte header, the value bytes as received
            assert written[tag][4:6] == b"UN" and written[tag][12:] == implicit[_value_range(spliced, tag)]
        elif not (tag.group == PRIVATE_GROUP and tag.element >= 0x1000):
            assert fast[tag].VR == whole[tag].VR and fast[tag].value == whole[tag].value, tag
    for sealed in (encrypted[True].data, encrypted[False].data):
        back = pydicom.dcmread(io.BytesIO(restorers[True].process(sealed).data))
        np.testing.assert_array_equal(back.pixel_array, ds.pixel_array)
        assert back.ReferencedImageSequence[0].PurposeOfReferenceCodeSequence[0].CodeValue == "113691"
        assert back.AnatomicRegionSequence[0].CodeMeaning == "Abdomen"


def _value_range(spliced: Spliced, tag: int) -> slice:
    """Where an Implicit VR element's value sits in the received bytes (after its 8-byte header)."""
    begin, end = next((b, e) for t, b, e in spliced.elements if t == tag)
    return slice(begin + 8, end)
