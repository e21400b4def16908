"""DCMTK ``storescu`` sends instances with wrong-length vendor private elements, in Implicit and
Explicit VR, to a restoring ``serve``: accepted, restored, and the elements filed unchanged
(before issue 15 they were refused 0xC004, "data set cannot be decoded")."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomcrypt import dicom
from dicomcrypt.files import dicom_to_bytes, read_dicom, read_dicom_bytes
from dicomcrypt.pipeline import encrypt_instance
from helpers.corpus import sample
from helpers.store_clients import good_files, storescu
from helpers.vendor_quirks import QUIRK_VALUES, quirk_bytes, quirk_values, with_vendor_quirks

pytestmark = [pytest.mark.peer]


@pytest.mark.parametrize(("option", "syntax"), [("-xi", ImplicitVRLittleEndian), ("-xe", ExplicitVRLittleEndian)])
def test_storescu_sends_vendor_quirks_and_serve_restores_them(option, syntax, start_receiver, site_key, tmp_path):
    rx = start_receiver()
    plain = read_dicom_bytes(quirk_bytes(with_vendor_quirks(pydicom.dcmread(sample("CT_small.dcm"))), syntax))
    sealed = read_dicom_bytes(dicom_to_bytes(encrypt_instance(plain, key=site_key, mode="standard").dataset))
    path = tmp_path / "quirk.dcm"
    path.write_bytes(quirk_bytes(sealed, syntax))

    done = storescu(rx.port, [path], syntax=option)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Error" not in done.stdout + done.stderr

    (filed,) = good_files(rx.config.out)
    restored = read_dicom(filed)
    values = quirk_values(restored)
    assert values == {**{f"{k:02X}": v for k, v in QUIRK_VALUES.items()}, "nested": b"\x10\x20\x30\x40\x50\x60"}
    np.testing.assert_array_equal(dicom.read_frames(restored)[0], dicom.read_frames(plain)[0])
    assert restored.SOPInstanceUID == plain.SOPInstanceUID
    assert sum(c.refused for c in rx.studies().values()) == 0
