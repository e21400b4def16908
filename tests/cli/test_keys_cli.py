"""keygen --recipient / --public, encrypt to recipients, decrypt with recipient keys, keyrings, rekey.

In-process ``main([...])`` with ``--jobs 1`` and ``--mode standard`` (the codec is not what is
tested here), over copies of pydicom's small test files.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from dicomcrypt import dicom
from dicomcrypt.cli.main import main
from dicomcrypt.crypto import Recipient, RecipientKey
from dicomcrypt.envelope import MAX_STANZAS, read_header
from dicomcrypt.files import read_dicom
from dicomcrypt.runner.manifest import MANIFEST_NAME

POSIX = os.name == "posix"


def _tree(root: Path) -> Path:
    for rel, name in {"ct/CT_small.dcm": "CT_small.dcm", "mr/MR_small.dcm": "MR_small.dcm"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(get_testdata_file(name), root / rel)
    return root


def _files(root: Path) -> set[str]:
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} if root.exists() else set()
    return {f for f in files if not f.startswith(MANIFEST_NAME)}  # the job manifest is not an output


def _recipient(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["keygen", "--recipient", "--out", str(path)]) == 0
    return capsys.readouterr().out.strip()


def _site_key(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["keygen", "--out", str(path)]) == 0
    return capsys.readouterr().out.strip()


def _pixels_equal(a: Path, b: Path) -> None:
    np.testing.assert_array_equal(dicom.read_frames(read_dicom(a))[0], dicom.read_frames(read_dicom(b))[0])


def _envelope(path: Path) -> bytes:
    info = dicom.read_private_block(read_dicom(path))
    assert info is not None
    return info.envelope


def _ciphertext(path: Path) -> bytes:
    blob = _envelope(path)
    return blob[read_header(blob).header_length :]


ENC = ["--jobs", "1", "--mode", "standard"]


# -- keygen ------------------------------------------------------------------------------------


def test_keygen_recipient_and_public(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.key"
    text = _recipient(path, capsys)
    recipient = Recipient.parse(text)
    assert RecipientKey.load(path).recipient == recipient
    if POSIX:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main(["keygen", "--public", str(path)]) == 0
    assert capsys.readouterr().out.strip() == text
    assert main(["keygen", "--recipient", "--out", str(path)]) == 3  # never overwritten
    assert "not overwritten" in capsys.readouterr().err
    assert RecipientKey.load(path).recipient == recipient


def test_keygen_public_of_a_site_key_or_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _site_key(tmp_path / "site.key", capsys)
    assert main(["keygen", "--public", str(tmp_path / "site.key")]) == 3
    assert "site key file" in capsys.readouterr().err
    assert main(["keygen", "--public", str(tmp_path / "none.key")]) == 3
    assert "not found" in capsys.readouterr().err
    assert main(["keygen"]) == 2
    assert main(["keygen", "--out", "a.key", "--public", "b.key"]) == 2


# -- encrypt to recipients, decrypt with recipient keys ----------------------------------------


def test_encrypt_to_recipients_and_decrypt_with_either(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _tree(tmp_path / "in")
    a = _recipient(tmp_path / "a.key", capsys)
    b = _recipient(tmp_path / "b.key", capsys)
    listing = tmp_path / "recipients.txt"
    listing.write_text(f"# partner hospital\n{b}  # node b\n\n")
    argv = ["encrypt", *ENC, "--recipient", a, "--recipients-file", str(listing), str(src), str(tmp_path / "enc")]
    assert main(argv) == 0
    capsys.readouterr()
    ids = read_header(_envelope(tmp_path / "enc" / "ct" / "CT_small.dcm")).key_ids
    assert ids == (Recipient.parse(a).key_id, Recipient.parse(b).key_id)
    for holder in ("a.key", "b.key"):
        out = tmp_path / f"dec-{holder}"
        assert main(["decrypt", "--jobs", "1", "--key", str(tmp_path / holder), str(tmp_path / "enc"), str(out)]) == 0
        _pixels_equal(out / "ct" / "CT_small.dcm", src / "ct" / "CT_small.dcm")
    capsys.readouterr()


def test_private_key_matching_no_stanza_fails_naming_the_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _tree(tmp_path / "in")
    a = _recipient(tmp_path / "a.key", capsys)
    _recipient(tmp_path / "stranger.key", capsys)
    assert main(["encrypt", *ENC, "--recipient", a, str(src), str(tmp_path / "enc")]) == 0
    capsys.readouterr()
    out = tmp_path / "dec"
    stranger = tmp_path / "stranger.key"
    assert main(["decrypt", "--jobs", "1", "--key", str(stranger), str(tmp_path / "enc"), str(out)]) == 1
    report = capsys.readouterr().out
    assert f"no key for key id {Recipient.parse(a).key_id}" in report
    assert _files(out) == set()


@pytest.mark.parametrize(
    "bad, message",
    [
        pytest.param("checksum", "bad checksum", id="bad checksum"),
        pytest.param("prefix", "wrong prefix", id="wrong prefix"),
        pytest.param("length", "wrong length", id="wrong length"),
    ],
)
def test_malformed_recipient_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str, message: str
) -> None:
    src = _tree(tmp_path / "in")
    good = _recipient(tmp_path / "a.key", capsys)
    text = {
        "checksum": good[:-1] + ("q" if good[-1] != "q" else "p"),
        "prefix": "age1" + good[8:],
        "length": good[:-3],
    }[bad]
    out = tmp_path / "enc"
    assert main(["encrypt", *ENC, "--recipient", text, str(src), str(out)]) == 3
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_recipients_file_problems_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _tree(tmp_path / "in")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody yet\n")
    out = tmp_path / "enc"
    assert main(["encrypt", *ENC, "--recipients-file", str(empty), str(src), str(out)]) == 3
    assert "lists no recipients" in capsys.readouterr().err
    assert main(["encrypt", *ENC, "--recipients-file", str(tmp_path / "missing.txt"), str(src), str(out)]) == 3
    assert "cannot read" in capsys.readouterr().err
    assert main(["encrypt", *ENC, str(src), str(out)]) == 2
    assert "--recipient" in capsys.readouterr().err
    assert not out.exists()


def test_more_recipients_than_the_cap_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _tree(tmp_path / "in")
    listing = tmp_path / "many.txt"
    listing.write_text("\n".join(str(RecipientKey.generate().recipient) for _ in range(MAX_STANZAS + 1)))
    out = tmp_path / "enc"
    assert main(["encrypt", *ENC, "--recipients-file", str(listing), str(src), str(out)]) == 3
    assert "at most 16" in capsys.readouterr().err
    assert not out.exists()


def test_recipient_private_key_is_not_an_encryption_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _tree(tmp_path / "in")
    _recipient(tmp_path / "node.key", capsys)
    assert main(["encrypt", *ENC, "--key", str(tmp_path / "node.key"), str(src), str(tmp_path / "enc")]) == 3
    assert "keygen --public" in capsys.readouterr().err
    assert not (tmp_path / "enc").exists()


# -- keyrings and rekey ------------------------------------------------------------------------


def test_rotation_with_a_keyring_and_rekey(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Encrypt with the old key; rotate the keyring; old files still open; rekey retires the old key."""
    src = _tree(tmp_path / "in")
    keys = tmp_path / "keys"
    keys.mkdir()
    _site_key(keys / "2026.key", capsys)
    _site_key(keys / "2027.key", capsys)
    node = _recipient(keys / "node.key", capsys)
    ring = keys / "keyring.toml"
    ring.write_text('encrypt = ["2026.key"]\n')
    assert main(["encrypt", *ENC, "--key", str(ring), str(src), str(tmp_path / "enc")]) == 0

    ring.write_text(f'encrypt = ["2027.key", "{node}"]\ndecrypt = ["2026.key"]\n')  # rotation
    assert main(["decrypt", "--jobs", "1", "--key", str(ring), str(tmp_path / "enc"), str(tmp_path / "dec-old")]) == 0
    _pixels_equal(tmp_path / "dec-old" / "mr" / "MR_small.dcm", src / "mr" / "MR_small.dcm")

    assert main(["rekey", "--jobs", "1", "--key", str(ring), str(tmp_path / "enc"), str(tmp_path / "rekeyed")]) == 0
    assert "2 rekeyed" in capsys.readouterr().out
    for rel in ("ct/CT_small.dcm", "mr/MR_small.dcm"):
        assert _ciphertext(tmp_path / "rekeyed" / rel) == _ciphertext(tmp_path / "enc" / rel)
    argv = ["decrypt", "--jobs", "1", "--key", str(keys / "2026.key"), str(tmp_path / "rekeyed"), str(tmp_path / "no")]
    assert main(argv) == 1
    assert "no key for key id" in capsys.readouterr().out
    assert _files(tmp_path / "no") == set()
    for holder in ("2027.key", "node.key"):
        out = tmp_path / f"dec-{holder}"
        assert main(["decrypt", "--jobs", "1", "--key", str(keys / holder), str(tmp_path / "rekeyed"), str(out)]) == 0
        _pixels_equal(out / "ct" / "CT_small.dcm", src / "ct" / "CT_small.dcm")


def test_rekey_to_a_recipient_keeping_the_old_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _tree(tmp_path / "in")
    _site_key(tmp_path / "site.key", capsys)
    node = _recipient(tmp_path / "node.key", capsys)
    assert main(["encrypt", *ENC, "--key", str(tmp_path / "site.key"), str(src), str(tmp_path / "enc")]) == 0
    assert main(["rekey", "--jobs", "1", "--key", str(tmp_path / "site.key"), "--to", node, "--keep",
                 str(tmp_path / "enc"), str(tmp_path / "both")]) == 0
    capsys.readouterr()
    for holder in ("site.key", "node.key"):
        out = tmp_path / f"dec-{holder}"
        assert main(["decrypt", "--jobs", "1", "--key", str(tmp_path / holder), str(tmp_path / "both"), str(out)]) == 0
    assert main(["inspect", str(tmp_path / "both" / "ct" / "CT_small.dcm")]) == 0
    assert Recipient.parse(node).key_id in capsys.readouterr().out


def test_rekey_failures_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _tree(tmp_path / "in")
    _site_key(tmp_path / "site.key", capsys)
    _site_key(tmp_path / "other.key", capsys)
    assert main(["encrypt", *ENC, "--key", str(tmp_path / "site.key"), str(src), str(tmp_path / "enc")]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    # the key given does not open the files
    assert main(["rekey", "--jobs", "1", "--key", str(tmp_path / "other.key"), "--to", str(tmp_path / "other.key"),
                 str(tmp_path / "enc"), str(out)]) == 1
    assert "no key for key id" in capsys.readouterr().out
    # no target
    assert main(["rekey", "--jobs", "1", "--key", str(tmp_path / "site.key"), str(tmp_path / "enc"), str(out)]) == 3
    assert "needs --to" in capsys.readouterr().err
    # a malformed target
    assert main(["rekey", "--jobs", "1", "--key", str(tmp_path / "site.key"), "--to", "dcrecip1xyz",
                 str(tmp_path / "enc"), str(out)]) == 3
    assert "wrong length" in capsys.readouterr().err
    # a file whose envelope was altered is not re-keyed
    target = tmp_path / "enc" / "ct" / "CT_small.dcm"
    ds = read_dicom(target)
    info = dicom.read_private_block(ds)
    blob = bytearray(info.envelope)
    blob[-1] ^= 1
    import dataclasses

    dicom.write_private_block(ds, dataclasses.replace(info, envelope=bytes(blob)))
    ds.save_as(target, enforce_file_format=True)
    assert main(["rekey", "--jobs", "1", "--key", str(tmp_path / "site.key"), "--to", str(tmp_path / "other.key"),
                 str(tmp_path / "enc"), str(out)]) == 1
    assert "decryption failed" in capsys.readouterr().out
    assert _files(out) == {"mr/MR_small.dcm"}
