"""Interoperability with GDCM's gdcmanon, an independent PS3.15 E.1 implementation (Debian
libgdcm-tools): what we protect, gdcmanon re-identifies; what gdcmanon protects, we restore.

gdcmanon flags (gdcm 3.0): ``-e --certificate CERT`` de-identifies with encryption (content
cipher ``--aes128``/``--aes192``/``--aes256`` (default)/``--des3``); ``-d --key KEY``
re-identifies; ``-i IN -o OUT``. It reads and writes Explicit VR Little Endian content.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pydicom
import pytest
from helpers.corpus import TEST_FILES_DIR, read_quietly, through_bytes
from helpers.dciodvfy import require_tool
from helpers.identity import attribute_differences, make_identity

from dicomcrypt import dicom
from dicomcrypt.cli.main import main
from dicomcrypt.crypto import Key
from dicomcrypt.crypto.cms import IdentityKey, parse_enveloped
from dicomcrypt.errors import DecryptionError
from dicomcrypt.identity_protection import IdentityProtection
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance

pytestmark = pytest.mark.peer

FILES = ["CT_small.dcm", "MR_small.dcm"]
_CIPHER_OIDS = {
    "aes128": "2.16.840.1.101.3.4.1.2",
    "aes192": "2.16.840.1.101.3.4.1.22",
    "aes256": "2.16.840.1.101.3.4.1.42",
    "des3": "1.2.840.113549.3.7",
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    return make_identity(tmp_path_factory.mktemp("gdcm-pki"), "gdcm-interop")


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate()


def gdcmanon(*args: str) -> None:
    exe = require_tool("gdcmanon")
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"gdcmanon {' '.join(args)} failed: {done.stdout}{done.stderr}"


def _write(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("name", FILES)
def test_gdcmanon_reidentifies_what_we_protect(tmp_path: Path, pair, name):
    original = read_quietly(TEST_FILES_DIR / name)
    protected = copy.deepcopy(original)
    IdentityProtection.load([pair.cert]).protect(protected)
    assert protected.PatientName != original.PatientName
    src = _write(protected, tmp_path / "protected.dcm")
    gdcmanon("--key", str(pair.key), "-d", "-i", str(src), "-o", str(tmp_path / "restored.dcm"))
    restored = read_quietly(tmp_path / "restored.dcm")
    assert attribute_differences(original, restored) == []


@pytest.mark.parametrize("name", FILES)
def test_gdcmanon_reidentifies_our_pixel_encrypted_output(tmp_path: Path, pair, key, name):
    original = read_quietly(TEST_FILES_DIR / name)
    protection = IdentityProtection.load([pair.cert])
    encrypted = encrypt_instance(original, key=key, mode="standard", protect_identity=protection)
    src = _write(encrypted.dataset, tmp_path / "encrypted.dcm")
    gdcmanon("--key", str(pair.key), "-d", "-i", str(src), "-o", str(tmp_path / "restored.dcm"))
    restored = read_quietly(tmp_path / "restored.dcm")
    # Every attribute the placeholder leaves alone is the original again; pixels stay encrypted.
    placeholder = set(dicom.SNAPSHOT_TAGS) | {0x7FE00010}
    untouched = {t for t in original.keys() if t not in placeholder and (t >> 16) not in dicom.OVERLAY_GROUPS}
    assert [str(t) for t in untouched if original.get(t) != restored.get(t)] == []
    assert "PatientIdentityRemoved" not in restored and "EncryptedAttributesSequence" not in restored
    assert dicom.read_private_block(restored) is not None
    # The pixel envelope is bound to the replacement UIDs (docs/security.md): after a third-party
    # re-identification, the original UIDs no longer match it.
    with pytest.raises(DecryptionError):
        decrypt_instance(restored, keys=key)


@pytest.mark.parametrize("cipher", sorted(_CIPHER_OIDS))
def test_we_restore_what_gdcmanon_protects(tmp_path: Path, pair, key, cipher):
    source = TEST_FILES_DIR / "CT_small.dcm"
    gdcmanon("--certificate", str(pair.cert), "-e", f"--{cipher}", "-i", str(source), "-o", str(tmp_path / "anon.dcm"))
    anonymised = read_quietly(tmp_path / "anon.dcm")
    original = read_quietly(source)
    assert anonymised.PatientName != original.PatientName and anonymised.PatientIdentityRemoved == "YES"
    content = anonymised.EncryptedAttributesSequence[0].EncryptedContent
    assert parse_enveloped(content).content_algorithm == _CIPHER_OIDS[cipher]

    outcome = decrypt_instance(anonymised, keys=key, identity_keys=[IdentityKey.load(pair.key)])
    assert (outcome.action, outcome.mode) == ("decrypted", "identity")
    assert attribute_differences(original, through_bytes(outcome.dataset)) == []


def test_cli_restores_a_gdcmanon_file_and_says_so_without_the_key(tmp_path: Path, pair, key, capsys):
    source = TEST_FILES_DIR / "MR_small.dcm"
    anon = tmp_path / "anon.dcm"
    gdcmanon("--certificate", str(pair.cert), "-e", "-i", str(source), "-o", str(anon))
    site = tmp_path / "site.key"
    key.save(site)

    plain = tmp_path / "plain.dcm"
    assert main(["decrypt", "-k", str(site), "-j", "1", str(anon), str(plain)]) == 0
    assert "identity NOT restored" in capsys.readouterr().out
    assert read_quietly(plain).PatientIdentityRemoved == "YES"

    restored = tmp_path / "restored.dcm"
    argv = ["decrypt", "-k", str(site), "--identity-key", str(pair.key), "-j", "1", "-q", str(anon), str(restored)]
    assert main(argv) == 0
    assert attribute_differences(read_quietly(source), read_quietly(restored)) == []
