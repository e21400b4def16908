"""DCMTK ``storescu`` -> our receiver: transfer syntaxes, restore and vault modes, TLS.

Real peer, loopback, free ports. Files are encrypted in the test (``standard`` mode, small
images) so the codec does not dominate; what is tested is the receiving node.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomcrypt.dicom import PRIVATE_CREATOR, PRIVATE_GROUP, read_private_block
from dicomcrypt.net.tls import server_context
from helpers.corpus import read_quietly
from helpers.store_clients import good_files, storescu

pytestmark = [pytest.mark.peer, pytest.mark.slow]

SYNTAXES = {
    "-xe": ExplicitVRLittleEndian,
    "-xi": ImplicitVRLittleEndian,
    "-xd": DeflatedExplicitVRLittleEndian,
    "-xb": ExplicitVRBigEndian,
}



def in_syntax(paths: tuple[Path, ...], syntax: str, folder: Path) -> list[Path]:
    """Copies of ``paths`` re-encoded as deflated when asked (DCMTK sends a deflated file
    deflated; the other syntaxes it converts on the fly)."""
    if syntax != DeflatedExplicitVRLittleEndian:
        return list(paths)
    copies = []
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = syntax
        copy = folder / path.name
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(copy, enforce_file_format=True)
        copies.append(copy)
    return copies


def private_elements(ds: pydicom.Dataset) -> dict[int, bytes]:
    """Our private block's elements as raw value bytes, by element offset."""
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    found = {}
    for elem in ds.group_dataset(PRIVATE_GROUP):
        if elem.tag.element >> 8 == block.block_start >> 8 and elem.tag.element & 0xFF00:
            value = elem.value
            found[elem.tag.element & 0xFF] = value if isinstance(value, bytes) else str(value).encode()
    return found


@pytest.mark.parametrize("option", sorted(SYNTAXES))
def test_storescu_to_restoring_receiver(option, start_receiver, encrypted_files, tmp_path):
    rx = start_receiver()
    files = in_syntax(encrypted_files.encrypted, SYNTAXES[option], tmp_path / "sent")
    done = storescu(rx.port, files, syntax=option)
    assert done.returncode == 0, done.stderr

    filed = good_files(rx.config.out)
    assert len(filed) == len(files)
    originals = {str(read_quietly(p).SOPInstanceUID): read_quietly(p) for p in encrypted_files.plain}
    for path in filed:
        restored = pydicom.dcmread(path)
        original = originals[str(restored.SOPInstanceUID)]
        assert path.relative_to(rx.config.out).parts == (
            restored.StudyInstanceUID, restored.SeriesInstanceUID, f"{restored.SOPInstanceUID}.dcm"
        )
        assert restored.file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        np.testing.assert_array_equal(restored.pixel_array, original.pixel_array)
        assert restored.PatientName == original.PatientName
        assert read_private_block(restored) is None
    assert not any(rx.quarantine_dir.rglob("*")) if rx.quarantine_dir.exists() else True
    counts = rx.studies()
    assert sum(c.stored for c in counts.values()) == len(files)
    assert sum(c.refused for c in counts.values()) == 0


@pytest.mark.parametrize("option", sorted(SYNTAXES))
def test_storescu_to_vault_keeps_private_block_byte_identical(option, start_receiver, encrypted_files, site_key,
                                                               tmp_path):
    from dicomcrypt import KeyRing, decrypt_dataset

    rx = start_receiver(store="encrypted", keys=None, out=tmp_path / "vault")
    files = in_syntax(encrypted_files.encrypted, SYNTAXES[option], tmp_path / "sent")
    done = storescu(rx.port, files, syntax=option)
    assert done.returncode == 0, done.stderr

    filed = good_files(rx.config.out)
    assert len(filed) == len(files)
    sent = {str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p) for p in encrypted_files.encrypted}
    for path in filed:
        kept = pydicom.dcmread(path)
        assert kept.file_meta.TransferSyntaxUID == SYNTAXES[option]  # stored as it travelled
        original = sent[str(kept.SOPInstanceUID)]
        assert private_elements(kept) == private_elements(original)
        assert private_elements(kept)  # the block is there at all
        plain = read_quietly(encrypted_files.plain[list(sent).index(str(kept.SOPInstanceUID))])
        restored = decrypt_dataset(kept, keys=KeyRing([site_key]))
        np.testing.assert_array_equal(restored.pixel_array, plain.pixel_array)


def test_vault_with_key_authenticates_and_refuses_tampered(start_receiver, encrypted_files, site_key, tmp_path):
    from dicomcrypt import KeyRing

    rx = start_receiver(store="encrypted", keys=KeyRing([site_key]), out=tmp_path / "vault")
    ds = pydicom.dcmread(encrypted_files.encrypted[0])
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    envelope = next(e for e in ds.group_dataset(PRIVATE_GROUP) if e.VR == "OB" and e.tag.element > 0xFF)
    blob = bytearray(envelope.value)
    blob[-5] ^= 0x01  # inside the ciphertext / tag
    ds[envelope.tag].value = bytes(blob)
    assert block  # found by creator
    tampered = tmp_path / "tampered.dcm"
    ds.save_as(tampered, enforce_file_format=True)

    refused = storescu(rx.port, [tampered])
    assert "Error: CannotUnderstand" in refused.stdout + refused.stderr
    done = storescu(rx.port, [encrypted_files.encrypted[1]])
    assert done.returncode == 0, done.stderr
    expected = f"{pydicom.dcmread(encrypted_files.encrypted[1]).SOPInstanceUID}.dcm"
    assert [p.name for p in good_files(rx.config.out)] == [expected]
    assert len(list(rx.quarantine_dir.glob("*.json"))) == 1


# -- TLS ---------------------------------------------------------------------------------------


def tls_receiver(start_receiver, pki, *, mutual: bool):
    ctx = server_context(pki.server_cert, pki.server_key, pki.ca if mutual else None)
    return start_receiver(ssl_context=ctx)


def test_storescu_tls_to_server_tls(start_receiver, pki, encrypted_files):
    rx = tls_receiver(start_receiver, pki, mutual=False)
    done = storescu(rx.port, encrypted_files.encrypted, tls=["+tla", "+cf", str(pki.ca)])
    assert done.returncode == 0, done.stderr
    assert len(good_files(rx.config.out)) == len(encrypted_files.encrypted)


def test_storescu_mutual_tls_with_client_certificate(start_receiver, pki, encrypted_files):
    rx = tls_receiver(start_receiver, pki, mutual=True)
    done = storescu(rx.port, encrypted_files.encrypted,
                    tls=["+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca)])
    assert done.returncode == 0, done.stderr
    assert len(good_files(rx.config.out)) == len(encrypted_files.encrypted)


def test_untrusted_client_certificate_and_plain_tcp_are_refused(start_receiver, pki, encrypted_files):
    rx = tls_receiver(start_receiver, pki, mutual=True)
    rogue = storescu(rx.port, encrypted_files.encrypted[:1],
                     tls=["+tls", str(pki.rogue_client_key), str(pki.rogue_client_cert), "+cf", str(pki.ca)])
    no_cert = storescu(rx.port, encrypted_files.encrypted[:1], tls=["+tla", "+cf", str(pki.ca)])
    plain = storescu(rx.port, encrypted_files.encrypted[:1], timeout=60)
    for refused in (rogue, no_cert, plain):
        assert refused.returncode != 0, refused.stdout + refused.stderr
    assert good_files(rx.config.out) == []

    done = storescu(rx.port, encrypted_files.encrypted,
                    tls=["+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca)])
    assert done.returncode == 0, done.stderr  # still serving after the refusals
    assert len(good_files(rx.config.out)) == len(encrypted_files.encrypted)
