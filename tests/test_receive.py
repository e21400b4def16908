"""dicomcrypt.receive: received bytes -> decision, on bytes alone (no sockets, no PACS).

Every outcome and status the module docstring promises, for the inputs ``serve`` and the PACS
hooks meet: encrypted instances (lossless, lossy, deflated, big endian), a vault with and without
a key, plain images, non-images, garbage, tampering and unknown keys.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomcrypt import Key, KeyRing, encrypt_dataset
from dicomcrypt import status as st
from dicomcrypt.dicom import read_private_block, remove_private_block, write_private_block
from dicomcrypt.dicom.encoding import swap_binary_values
from dicomcrypt.dicom.private_block import PRIVATE_CREATOR, PRIVATE_GROUP
from dicomcrypt.errors import (
    DecryptionError,
    InvalidInputError,
    KeyNotFoundError,
    NotDicomError,
    NotEncryptedError,
    PayloadFormatError,
)
from dicomcrypt.limits import DecodeLimits
from dicomcrypt.receive import Decision, ReceivePolicy, receive
from helpers import crafted
from helpers.corpus import fresh_copy, read_quietly, sample, to_bytes


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate()


@pytest.fixture(scope="module")
def restoring(key: Key) -> ReceivePolicy:
    return ReceivePolicy(store="restored", keys=KeyRing([key]))


VAULT = ReceivePolicy(store="encrypted")


def sealed(key: Key, mode: str = "standard", name: str = "CT_small.dcm") -> tuple[pydicom.Dataset, pydicom.Dataset]:
    """A fresh original and its encrypted copy."""
    original = fresh_copy(name)
    return original, encrypt_dataset(original, key=key, mode=mode)


def copied(ds: pydicom.Dataset) -> pydicom.Dataset:
    """A copy to edit. Not ``copy.deepcopy``: in pydicom 3.0 a deep copy's cached private blocks
    still point at the original data set, so editing our block through them edits the original."""
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


def deflated(ds: pydicom.Dataset) -> bytes:
    ds = copied(ds)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return to_bytes(ds)


def big_endian(ds: pydicom.Dataset) -> bytes:
    """``ds`` written as Explicit VR Big Endian, its binary values swapped to match."""
    ds = copied(ds)
    for elem in ds:
        swap_binary_values(elem)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True, implicit_vr=False, little_endian=False)
    return buffer.getvalue()


def tampered(ds: pydicom.Dataset) -> bytes:
    """``ds`` with one bit of its envelope's ciphertext flipped."""
    ds = copied(ds)
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    envelope = bytearray(block[0x10].value)
    envelope[-20] ^= 0x01
    block[0x10].value = bytes(envelope)
    return to_bytes(ds)


def readable_mode_edited(ds: pydicom.Dataset) -> bytes:
    """``ds`` whose readable mode element no longer agrees with the envelope header."""
    ds = copied(ds)
    info = read_private_block(ds)
    remove_private_block(ds)
    write_private_block(ds, type(info)(**{**info.__dict__, "mode": "LOSSY"}))
    return to_bytes(ds)


def reread(decision: Decision) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(decision.data))


def assert_refused(decision: Decision, status: st.StoreStatus, error: type[Exception]) -> None:
    assert decision.refused and decision.status == status
    assert isinstance(decision.error, error)
    assert decision.data == b"" and decision.comment and len(decision.comment) <= st.COMMENT_MAX
    assert decision.status in st.RECEIVE_STATUSES


# -- restore ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["lossless", "lossy"])
def test_an_encrypted_ct_is_restored(key: Key, restoring: ReceivePolicy, mode: str) -> None:
    original, encrypted = sealed(key, mode)
    decision = receive(to_bytes(encrypted), restoring)
    assert decision.action == "restored" and decision.status == st.SUCCESS and decision.mode == mode
    back = reread(decision)
    assert read_private_block(back) is None
    assert back.SOPInstanceUID == decision.dataset.SOPInstanceUID
    if mode == "lossless":
        assert back.SOPInstanceUID == original.SOPInstanceUID
        np.testing.assert_array_equal(back.pixel_array, original.pixel_array)
    else:
        assert back.SOPInstanceUID != original.SOPInstanceUID and back.LossyImageCompression == "01"
        assert decision.dataset.SourceImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID


@pytest.mark.parametrize("encode", [deflated, big_endian], ids=["deflated", "big-endian"])
@pytest.mark.parametrize("name", ["image_dfl.dcm", "MR_small_bigendian.dcm", "CT_small.dcm"])
def test_deflated_and_big_endian_instances_are_restored_little_endian(
    key: Key, restoring: ReceivePolicy, name: str, encode
) -> None:
    """Whether the original was deflated or big endian, or the instance travelled so."""
    original, encrypted = sealed(key, name=name)
    data = encode(encrypted)
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID in (
        DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    )
    decision = receive(data, restoring)
    assert decision.action == "restored"
    back = reread(decision)
    assert back.file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    np.testing.assert_array_equal(back.pixel_array, original.pixel_array)
    assert back.PatientName == original.PatientName


def test_a_decoded_data_set_is_decided_like_its_bytes_and_left_untouched(key: Key, restoring: ReceivePolicy) -> None:
    """``serve`` passes pynetdicom's decoded data set beside the raw bytes."""
    original, encrypted = sealed(key)
    data = deflated(encrypted)
    received = pydicom.dcmread(io.BytesIO(data))
    decision = receive(data, restoring, dataset=received)
    assert decision.action == "restored"
    assert reread(decision).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(reread(decision).pixel_array, original.pixel_array)
    assert read_private_block(received) is not None
    assert received.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian


# -- keep encrypted (vault) --------------------------------------------------------------------


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "key"])
def test_a_vault_keeps_the_bytes_as_received(key: Key, with_key: bool) -> None:
    _, encrypted = sealed(key)
    data = deflated(encrypted)
    policy = ReceivePolicy(store="encrypted", keys=KeyRing([key])) if with_key else VAULT
    decision = receive(data, policy)
    assert decision.action == "kept encrypted" and decision.status == st.SUCCESS
    assert decision.data is data and decision.mode == "standard"
    assert read_private_block(decision.dataset) is not None


def test_a_vault_authenticates_only_with_a_key(key: Key) -> None:
    _, encrypted = sealed(key)
    data = tampered(encrypted)
    assert receive(data, VAULT).action == "kept encrypted"  # cannot know without the key
    assert_refused(receive(data, ReceivePolicy(store="encrypted", keys=KeyRing([key]))), st.DECRYPTION_FAILED,
                   DecryptionError)
    other = ReceivePolicy(store="encrypted", keys=KeyRing([Key.generate()]))
    assert_refused(receive(to_bytes(encrypted), other), st.UNKNOWN_KEY, KeyNotFoundError)


def test_an_edited_readable_element_is_refused_by_every_policy(key: Key, restoring: ReceivePolicy) -> None:
    """The vault applies the restore path's check, with the same status ``serve`` answers."""
    _, encrypted = sealed(key)
    data = readable_mode_edited(encrypted)
    keyed_vault = ReceivePolicy(store="encrypted", keys=KeyRing([key]))
    for policy in (restoring, keyed_vault, VAULT):
        decision = receive(data, policy)
        assert_refused(decision, st.DECRYPTION_FAILED, DecryptionError)
        assert decision.comment == st.DECRYPTION_COMMENT


# -- no envelope -------------------------------------------------------------------------------


def test_a_plain_image_is_refused_unless_plain_is_accepted(key: Key) -> None:
    data = to_bytes(fresh_copy("CT_small.dcm"))
    for policy in (ReceivePolicy(keys=KeyRing([key])), VAULT):
        decision = receive(data, policy)
        assert_refused(decision, st.NOT_ENCRYPTED, NotEncryptedError)
        assert decision.status.code == 0xC005 and decision.dataset is not None
    accepted = receive(data, ReceivePolicy(keys=KeyRing([key]), accept_plain=True))
    assert accepted.action == "passed through" and accepted.status == st.SUCCESS
    assert accepted.data is data and accepted.mode is None


def test_a_structured_report_passes_through(restoring: ReceivePolicy) -> None:
    data = to_bytes(read_quietly(sample("test-SR.dcm")))
    for policy in (restoring, VAULT):
        decision = receive(data, policy)
        assert decision.action == "passed through" and decision.status == st.SUCCESS
        assert decision.data is data and decision.note == "not encrypted by dicomcrypt"


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:End of file reached")
@pytest.mark.parametrize("data", [b"", b"not dicom at all", b"\x00" * 128 + b"DICM" + b"\xff" * 64])
def test_garbage_cannot_be_understood(restoring: ReceivePolicy, data: bytes) -> None:
    decision = receive(data, restoring)
    assert_refused(decision, st.CANNOT_UNDERSTAND, NotDicomError)
    assert decision.dataset is None


def test_a_tampered_envelope_fails_with_one_constant_comment(key: Key, restoring: ReceivePolicy) -> None:
    _, encrypted = sealed(key)
    decision = receive(tampered(encrypted), restoring)
    assert_refused(decision, st.DECRYPTION_FAILED, DecryptionError)
    assert decision.comment == st.DECRYPTION_COMMENT
    assert decision.dataset.SOPInstanceUID == encrypted.SOPInstanceUID  # for the caller's logs


def test_an_unknown_key_id_is_named(restoring: ReceivePolicy) -> None:
    other = Key.generate()
    _, encrypted = sealed(other)
    decision = receive(to_bytes(encrypted), restoring)
    assert_refused(decision, st.UNKNOWN_KEY, KeyNotFoundError)
    assert other.key_id in decision.comment


def test_an_unexpected_failure_is_a_processing_failure(key: Key, restoring: ReceivePolicy, monkeypatch) -> None:
    from dicomcrypt import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(pipeline, "decrypt_instance", broken)
    _, encrypted = sealed(key)
    assert_refused(receive(to_bytes(encrypted), restoring), st.PROCESSING_FAILURE, RuntimeError)


def test_a_policy_is_valid_once_built(key: Key) -> None:
    with pytest.raises(InvalidInputError, match="restoring needs at least one key"):
        ReceivePolicy(store="restored")
    with pytest.raises(InvalidInputError, match="restoring needs at least one key"):
        ReceivePolicy(store="restored", keys=KeyRing())
    with pytest.raises(InvalidInputError, match="'sideways'"):
        ReceivePolicy(store="sideways", keys=KeyRing([key]))  # type: ignore[arg-type]
    assert ReceivePolicy(store="encrypted").keys is None


# -- hostile payloads and damaged files are answered as such, never 0x0110 (issue 12) ----------


@pytest.fixture(scope="module")
def restoring_crafted() -> ReceivePolicy:
    """Restores what helpers.crafted seals; small limits, so a regression here allocates little."""
    return ReceivePolicy(store="restored", keys=KeyRing([crafted.KEY]), limits=DecodeLimits(max_pixel_bytes=2**19))


@pytest.mark.parametrize(("build", "message"), [
    (lambda: crafted.huge_shape(frames=2, rows=512, columns=512), "bytes of pixels"),
    (lambda: crafted.jpeg_ls_patched_height(300, 300), "JPEG-LS codestream declares 300 x 300"),
    (lambda: crafted.zstd_bomb(1 << 22), "zstd frame declares"),
    (lambda: crafted.crafted("standard", {"a": [[[[[[[[[[]]]]]]]]]]}, {}), "nested"),
])
def test_a_sealed_hostile_payload_is_refused_as_damaged(restoring_crafted: ReceivePolicy, build, message) -> None:
    decision = receive(to_bytes(build()), restoring_crafted)
    assert_refused(decision, st.ENVELOPE_DAMAGED, PayloadFormatError)
    assert message in str(decision.error)


def _uid_not_ascii(data: bytes, uid: bytes) -> bytes:
    return data.replace(uid, b"\xe9" + uid[1:])


def _rows_of_three_bytes(data: bytes, uid: bytes) -> bytes:
    return data.replace(b"(\x00\x10\x00US\x02\x00", b"(\x00\x10\x00US\x03\x00", 1)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize(("damage", "encrypted"), [
    (_uid_not_ascii, True), (_rows_of_three_bytes, True), (_rows_of_three_bytes, False),
])
def test_a_damaged_file_cannot_be_understood(key: Key, restoring: ReceivePolicy, damage, encrypted) -> None:
    original, sealed_copy = sealed(key)
    ds = sealed_copy if encrypted else original
    data = damage(to_bytes(ds), str(ds.SOPInstanceUID).encode())
    assert data != to_bytes(ds)
    decision = receive(data, ReceivePolicy(store="restored", keys=KeyRing([key]), accept_plain=True))
    assert_refused(decision, st.CANNOT_UNDERSTAND, NotDicomError)


def test_a_policy_takes_decode_limits(key: Key) -> None:
    assert ReceivePolicy(store="restored", keys=KeyRing([key])).limits == DecodeLimits()
    with pytest.raises(TypeError, match="limits is a DecodeLimits"):
        ReceivePolicy(store="restored", keys=KeyRing([key]), limits=1024)  # type: ignore[arg-type]
