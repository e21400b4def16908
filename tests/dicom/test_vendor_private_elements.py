"""Tolerant reading: vendor private elements whose length does not fit their dictionary VR are
kept as raw bytes (UN) and passed through unchanged, by every reader (files, encrypt, hooks);
a standard element that does not decode still stops the instance."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomcrypt import dicom
from dicomcrypt.crypto import Key
from dicomcrypt.errors import NotDicomError
from dicomcrypt.files import dicom_to_bytes, read_dicom, read_dicom_bytes
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance
from helpers.corpus import sample
from helpers.vendor_quirks import QUIRK_VALUES, quirk_bytes, quirk_values, read, with_vendor_quirks

VARIANTS = {
    "implicit": (ImplicitVRLittleEndian, False),
    "explicit-UN": (ExplicitVRLittleEndian, False),
    "explicit-labelled": (ExplicitVRLittleEndian, True),
}
EXPECTED = {**{f"{k:02X}": v for k, v in QUIRK_VALUES.items()}, "nested": b"\x10\x20\x30\x40\x50\x60"}


def _quirky(variant: str) -> bytes:
    syntax, labelled = VARIANTS[variant]
    return quirk_bytes(with_vendor_quirks(pydicom.dcmread(sample("CT_small.dcm"))), syntax, labelled=labelled)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pydicom_alone_cannot_decode_them(variant):
    """The premise: without tolerance these instances fail to decode."""
    with pytest.raises(Exception, match="(?i)bytes|length"):
        read(_quirky(variant)).walk(lambda _ds, _elem: None)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_they_are_kept_raw_and_written_back_unchanged(variant, tmp_path):
    data = _quirky(variant)
    ds = read_dicom_bytes(data)
    assert quirk_values(ds) == EXPECTED
    path = tmp_path / "quirk.dcm"
    path.write_bytes(data)
    assert quirk_values(read_dicom(path)) == EXPECTED
    again = read_dicom_bytes(dicom_to_bytes(ds))  # written back: the same bytes
    assert quirk_values(again) == EXPECTED
    assert again.PatientName == pydicom.dcmread(sample("CT_small.dcm")).PatientName


def test_a_standard_element_that_does_not_decode_is_still_refused():
    ds = pydicom.dcmread(sample("CT_small.dcm"))
    ds.add_new(0x00189087, "OB", b"\x01\x02\x03\x04\x05\x06")  # Diffusion b-value, FD; raw in Implicit VR
    data = quirk_bytes(ds, ImplicitVRLittleEndian)
    with pytest.raises(NotDicomError, match="does not decode"):
        read_dicom_bytes(data, label="sent.dcm")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_encrypt_and_decrypt_pass_them_through(variant):
    key = Key.generate()
    original = read_dicom_bytes(_quirky(variant))
    sealed = read_dicom_bytes(dicom_to_bytes(encrypt_instance(original, key=key, mode="standard").dataset))
    assert quirk_values(sealed) == EXPECTED
    restored = decrypt_instance(sealed, keys=[key], output_syntax="original").dataset
    restored = read_dicom_bytes(dicom_to_bytes(restored))
    assert quirk_values(restored) == EXPECTED
    np.testing.assert_array_equal(dicom.read_frames(restored)[0], dicom.read_frames(original)[0])


def test_storage_hooks_encrypt_and_restore_them():
    from dicomcrypt.integrations.hooks import StorageHook

    key = Key.generate()
    data = _quirky("implicit")
    sealed = StorageHook("encrypt", keys=key, encrypt_mode="standard", preload=False).process(data)
    assert sealed.action == "encrypted"
    sealed_ds = read_dicom_bytes(sealed.data)
    assert quirk_values(sealed_ds) == EXPECTED
    sealed_ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian  # as a PACS may hand it back
    buffer = io.BytesIO()
    sealed_ds.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=True)
    with pytest.raises(Exception, match="(?i)bytes|length"):
        read(buffer.getvalue()).walk(lambda _ds, _elem: None)  # still a quirk on the way in
    result = StorageHook(keys=key, preload=False).process(buffer.getvalue())
    assert result.action == "decrypted"
    restored = read_dicom_bytes(result.data)
    assert quirk_values(restored) == EXPECTED
    np.testing.assert_array_equal(dicom.read_frames(restored)[0], dicom.read_frames(read_dicom_bytes(data))[0])


def test_a_storage_hook_writes_the_output_syntax_it_is_given():
    """Hooks keep their uncompressed output unless given an output syntax (then as decrypt)."""
    from dicomcrypt.integrations.hooks import StorageHook

    key = Key.generate()
    original = pydicom.dcmread(sample("MR_small_RLE.dcm"))
    sealed = dicom_to_bytes(encrypt_instance(original, key=key, mode="standard").dataset)
    as_before = read_dicom_bytes(StorageHook(keys=key, preload=False).process(sealed).data)
    chosen = read_dicom_bytes(StorageHook(keys=key, preload=False, output_syntax="original").process(sealed).data)
    assert as_before.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert chosen.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    for restored in (as_before, chosen):
        np.testing.assert_array_equal(dicom.read_frames(restored)[0], dicom.read_frames(original)[0])
