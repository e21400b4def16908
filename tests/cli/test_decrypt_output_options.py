"""``decrypt --output-syntax`` and ``--uid-root`` on the command line (docs/cli.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from dicomcrypt.cli.main import main
from dicomcrypt.crypto import Key
from dicomcrypt.dicom import read_frames
from dicomcrypt.files import read_dicom

ROOT = "1.2.826.0.1.3680043.10.999"


@pytest.fixture
def encrypted(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(key file, folder of an RLE MR in standard mode and a CT in lossy mode, plain folder)."""
    key = tmp_path / "site.key"
    Key.generate().save(key)
    plain = tmp_path / "plain"
    for mode, name in (("standard", "MR_small_RLE.dcm"), ("lossy", "CT_small.dcm")):
        (plain / mode).mkdir(parents=True)
        shutil.copyfile(get_testdata_file(name), plain / mode / name)
        assert main(["encrypt", "-q", "-j", "1", "--key", str(key), "--mode", mode, str(plain / mode),
                     str(tmp_path / "enc" / mode)]) == 0
    return key, tmp_path / "enc", plain


def test_decrypt_writes_the_output_syntax_and_derives_the_same_uid_every_time(encrypted, tmp_path):
    key, enc, plain = encrypted
    outs = []
    for run in ("a", "b"):
        out = tmp_path / f"out-{run}"
        assert main(["decrypt", "-q", "-j", "1", "--key", str(key), "--uid-root", ROOT, str(enc), str(out)]) == 0
        outs.append(out)
    mr = [read_dicom(out / "standard" / "MR_small_RLE.dcm") for out in outs]
    ct = [read_dicom(out / "lossy" / "CT_small.dcm") for out in outs]
    assert mr[0].file_meta.TransferSyntaxUID == RLELossless  # --output-syntax original is the default
    original = read_dicom(plain / "standard" / "MR_small_RLE.dcm")
    np.testing.assert_array_equal(read_frames(mr[0])[0], read_frames(original)[0])
    assert ct[0].file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # the original's (lossless) syntax
    assert ct[0].SOPInstanceUID == ct[1].SOPInstanceUID and ct[0].SOPInstanceUID.startswith(ROOT + ".")

    flat = tmp_path / "flat"
    assert main(["decrypt", "-q", "-j", "1", "--key", str(key), "--output-syntax", "explicit-little",
                 str(enc), str(flat)]) == 0
    assert read_dicom(flat / "standard" / "MR_small_RLE.dcm").file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert read_dicom(flat / "lossy" / "CT_small.dcm").SOPInstanceUID.startswith("2.25.")


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--uid-root", "1.2.03", "UID root '1.2.03'"),
    ("--uid-root", "1." + "2" * 50, "at most 43"),
    ("--output-syntax", "jpeg", "invalid choice"),
])
def test_bad_values_are_usage_errors_that_say_why(option, value, message, tmp_path, capsys):
    code = main(["decrypt", "--key", str(tmp_path / "k"), option, value, str(tmp_path), str(tmp_path / "o")])
    assert code == 2
    assert message in capsys.readouterr().err
