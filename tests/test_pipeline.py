"""encrypt_dataset / decrypt_dataset on real files: round trips, DICOM rules, and bad input."""

from __future__ import annotations

import copy
import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from helpers.corpus import through_bytes, to_bytes
from pydicom.uid import JPEG2000Lossless

from dicomcrypt import dicom
from dicomcrypt.codec.registry import DEFAULT_CODECS, DEFAULT_MODELS
from dicomcrypt.crypto import Key, KeyRing
from dicomcrypt.envelope import instance_binding, open_envelope, seal
from dicomcrypt.errors import (
    DecryptionError,
    EnvelopeFormatError,
    IntegrityError,
    KeyNotFoundError,
    ModelMismatchError,
    NoPixelDataError,
    PayloadFormatError,
    PixelDecodeError,
)
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance, inspect_dataset, pixel_digest, rekey_instance
from dicomcrypt.quality import compare


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate()


def _load(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file(name))



def _pixels(ds: pydicom.Dataset) -> np.ndarray:
    return dicom.read_frames(ds)[0]


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",  # signed 16-bit CT
        "MR_small_RLE.dcm",  # RLE
        "emri_small_jpeg_ls_lossless.dcm",  # multi-frame JPEG-LS
        "SC_rgb.dcm",  # colour
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline YBR_FULL, decoded to RGB
        "SC_rgb_small_odd.dcm",  # 3x3 colour: padding and cropping
    ],
)
def test_lossless_restores_every_pixel_and_attribute(name, key):
    original = _load(name)
    before = copy.deepcopy(original)
    sealed = encrypt_instance(original, key=key)
    assert sealed.action == "encrypted" and sealed.mode == "lossless"
    assert original == before, "the input dataset must not be modified"
    encrypted = through_bytes(sealed.dataset)
    assert encrypted.SOPInstanceUID == original.SOPInstanceUID
    restored = through_bytes(decrypt_instance(encrypted, keys=KeyRing([key])).dataset)
    np.testing.assert_array_equal(_pixels(restored), _pixels(original))
    assert restored.SOPInstanceUID == original.SOPInstanceUID
    for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns", "BitsStored"):
        assert restored.get(keyword) == original.get(keyword), keyword
    assert dicom.read_private_block(restored) is None


def test_encrypted_instance_hides_pixels_and_shows_its_block(key):
    original = _load("CT_small.dcm")
    buffer = io.BytesIO()
    encrypt_instance(original, key=key).dataset.save_as(buffer, enforce_file_format=True)
    encrypted = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    assert encrypted.Rows * encrypted.Columns < original.Rows * original.Columns
    # No run of the original pixel bytes survives anywhere in the encrypted file.
    raw = original.PixelData
    assert all(raw[i : i + 64] not in buffer.getvalue() for i in range(0, len(raw) - 64, 997))
    info = inspect_dataset(encrypted)
    assert info.encrypted and info.mode == "lossless" and info.key_ids == (key.key_id,)
    assert info.model_id == DEFAULT_CODECS[1]  # the wavelet codec is the default
    assert not inspect_dataset(original).encrypted


def test_lossy_restores_a_derived_image_under_dicom_rules(key):
    original = _load("CT_small.dcm")
    sealed = encrypt_instance(original, key=key, mode="lossy", model=DEFAULT_MODELS[1])  # the autoencoder
    restored = decrypt_instance(through_bytes(sealed.dataset), keys=[key]).dataset
    assert restored.SOPInstanceUID != original.SOPInstanceUID
    assert restored.file_meta.MediaStorageSOPInstanceUID == restored.SOPInstanceUID
    assert restored.LossyImageCompression == "01"
    assert "DICOMCRYPT_AE" in list(np.atleast_1d(restored.LossyImageCompressionMethod))
    assert restored.SourceImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    assert restored.ImageType[0] == "DERIVED"
    quality = compare(_pixels(original), _pixels(through_bytes(restored)))
    assert quality.ssim > 0.9 and quality.psnr_db > 30
    # The latent is smaller than the pixels it replaces.
    assert sealed.metrics["latent_bytes"] < sealed.metrics["pixel_bytes"]


@pytest.mark.parametrize("name, reason", [("liver_1frame.dcm", "1-bit"), ("examples_palette.dcm", "palette")])
def test_objects_the_model_cannot_serve_fall_back_to_the_standard_codec(name, reason, key):
    original = _load(name)
    sealed = encrypt_instance(original, key=key, mode="lossy")
    assert sealed.mode == "standard" and reason in sealed.note
    restored = through_bytes(decrypt_instance(through_bytes(sealed.dataset), keys=[key]).dataset)
    np.testing.assert_array_equal(_pixels(restored), _pixels(original))


def test_non_image_instances_pass_through(key):
    report = _load("test-SR.dcm")
    outcome = encrypt_instance(report, key=key)
    assert outcome.action == "passed through"
    assert outcome.dataset == report
    assert decrypt_instance(report, keys=[key]).action == "passed through"


def test_an_image_without_pixel_data_is_refused(key):
    ds = _load("CT_small.dcm")
    del ds.PixelData
    with pytest.raises(NoPixelDataError):
        encrypt_instance(ds, key=key)


def test_an_unreadable_compressed_frame_is_refused(key):
    ds = _load("MR_small_jp2klossless.dcm")
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    data = bytearray(ds.PixelData)
    data[40:200] = bytes(160)  # wipe the codestream's main header and first tile
    ds.PixelData = bytes(data)
    with pytest.raises(PixelDecodeError):
        encrypt_instance(ds, key=key)


def test_wrong_key_names_the_key_id_the_file_needs(key):
    encrypted = encrypt_instance(_load("MR_small.dcm"), key=key).dataset
    other = Key.generate()
    with pytest.raises(KeyNotFoundError) as caught:
        decrypt_instance(encrypted, keys=[other])
    assert key.key_id in str(caught.value) and other.key_id in str(caught.value)


def test_every_tampered_envelope_byte_is_refused(key):
    encrypted = encrypt_instance(_load("MR_small.dcm"), key=key, mode="lossy").dataset
    envelope = dicom.read_private_block(encrypted).envelope
    rng = np.random.default_rng(0)
    positions = sorted(set(range(0, 160)) | set(rng.integers(0, len(envelope), 200).tolist()) | {len(envelope) - 1})
    for position in positions:
        tampered = copy.deepcopy(encrypted)
        data = bytearray(envelope)
        data[position] ^= 0x01
        _replace_envelope(tampered, bytes(data))
        with pytest.raises((DecryptionError, EnvelopeFormatError, KeyNotFoundError)):
            decrypt_instance(tampered, keys=[key])


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"])
def test_editing_a_bound_attribute_is_refused_with_one_message(keyword, key):
    encrypted = encrypt_instance(_load("MR_small.dcm"), key=key).dataset
    setattr(encrypted, keyword, "1.2.3.4.5.6.7")
    with pytest.raises(DecryptionError) as caught:
        decrypt_instance(encrypted, keys=[key])
    assert str(caught.value) == DecryptionError.MESSAGE


def test_editing_a_readable_private_element_is_refused(key):
    encrypted = encrypt_instance(_load("MR_small.dcm"), key=key).dataset
    info = dicom.read_private_block(encrypted)
    dicom.remove_private_block(encrypted)
    dicom.write_private_block(encrypted, type(info)(**{**info.__dict__, "mode": "LOSSY"}))
    with pytest.raises(DecryptionError):
        decrypt_instance(encrypted, keys=[key])


def test_a_truncated_envelope_is_refused(key):
    encrypted = encrypt_instance(_load("MR_small.dcm"), key=key).dataset
    envelope = dicom.read_private_block(encrypted).envelope
    for length in (0, 3, 40, len(envelope) // 2, len(envelope) - 1):
        _replace_envelope(encrypted, envelope[:length])
        with pytest.raises((EnvelopeFormatError, DecryptionError)):
            decrypt_instance(encrypted, keys=[key])


def test_model_mismatch_names_both_models(key):
    encrypted = encrypt_instance(_load("MR_small.dcm"), key=key).dataset
    info = dicom.read_private_block(encrypted)
    binding = instance_binding(*dicom.uids(encrypted))
    header, plaintext = open_envelope(info.envelope, keys=[key], binding=binding)
    resealed = seal(plaintext, key=key, mode=header.mode, model_id=header.model_id,
                    model_sha256=bytes(range(32)), binding=binding)
    _replace_envelope(encrypted, resealed)
    with pytest.raises(ModelMismatchError) as caught:
        decrypt_instance(encrypted, keys=[key])
    assert bytes(range(32)).hex() in str(caught.value) and header.model_sha256.hex() in str(caught.value)


def test_a_digest_mismatch_is_an_error_never_a_silent_difference(key):
    from dicomcrypt.payload import Payload

    encrypted = encrypt_instance(_load("MR_small.dcm"), key=key, mode="standard").dataset
    info = dicom.read_private_block(encrypted)
    binding = instance_binding(*dicom.uids(encrypted))
    header, plaintext = open_envelope(info.envelope, keys=[key], binding=binding)
    payload = Payload.from_bytes(plaintext)
    payload.meta["digest"] = pixel_digest(np.zeros((1, 1, 1, 1), np.uint8))
    resealed = seal(payload.to_bytes(), key=key, mode=header.mode, model_id=header.model_id,
                    model_sha256=header.model_sha256, binding=binding)
    _replace_envelope(encrypted, resealed)
    with pytest.raises(IntegrityError):
        decrypt_instance(encrypted, keys=[key])


def test_two_encryptions_never_share_data_key_or_nonce(key):
    ds = _load("MR_small.dcm")
    first = dicom.read_private_block(encrypt_instance(ds, key=key).dataset).envelope
    second = dicom.read_private_block(encrypt_instance(ds, key=key).dataset).envelope
    assert first != second
    from dicomcrypt.envelope import read_header

    assert read_header(first).nonce != read_header(second).nonce


def _replace_envelope(ds: pydicom.Dataset, envelope: bytes) -> None:
    info = dicom.read_private_block(ds)
    dicom.remove_private_block(ds)
    dicom.write_private_block(ds, type(info)(**{**info.__dict__, "envelope": envelope}))


@pytest.mark.slow
def test_lossy_restores_ct_padding_exactly_and_keeps_tissue_close(key):
    from helpers.corpus import sample

    original = pydicom.dcmread(sample("693_UNCR.dcm"))
    sealed = encrypt_instance(original, key=key, mode="lossy")
    restored = decrypt_instance(through_bytes(sealed.dataset), keys=[key]).dataset
    before, after = _pixels(original), _pixels(through_bytes(restored))
    padding = before == int(original.PixelPaddingValue)
    assert padding.mean() > 0.1  # this CT really is padded
    np.testing.assert_array_equal(after[padding], before[padding])
    quality = compare(before, after, rescale=(float(original.RescaleSlope), float(original.RescaleIntercept)))
    assert quality.psnr_db > 40 and quality.ssim > 0.97
    assert quality.window_mae_hu is not None and quality.window_mae_hu < 8


def _force_predictor(monkeypatch: pytest.MonkeyPatch, predictor: str) -> None:
    from dicomcrypt.codec import residual

    choose = residual.encode
    monkeypatch.setattr(residual, "encode", lambda frames, prediction: choose(frames, prediction, predictor=predictor))


def _open_payload(encrypted: pydicom.Dataset, key: Key):
    from dicomcrypt.payload import Payload

    info = dicom.read_private_block(encrypted)
    header, plaintext = open_envelope(info.envelope, keys=[key], binding=instance_binding(*dicom.uids(encrypted)))
    return header, Payload.from_bytes(plaintext)


def _reseal(encrypted: pydicom.Dataset, key: Key, edit, model_sha256: bytes | None = None) -> None:
    """Re-encrypt ``encrypted``'s payload after ``edit(payload)``, as a writer of that payload would."""
    header, payload = _open_payload(encrypted, key)
    edit(payload)
    resealed = seal(payload.to_bytes(), key=key, mode=header.mode, model_id=header.model_id,
                    model_sha256=model_sha256 or header.model_sha256, binding=instance_binding(*dicom.uids(encrypted)))
    _replace_envelope(encrypted, resealed)


@pytest.mark.parametrize("predictor", ["decoder", "none"])
@pytest.mark.parametrize("name", ["CT_small.dcm", "emri_small_jpeg_ls_lossless.dcm", "SC_rgb.dcm"])
def test_lossless_restores_exactly_with_each_forced_predictor(name, predictor, key, monkeypatch):
    original = _load(name)
    _force_predictor(monkeypatch, predictor)
    model = DEFAULT_MODELS[original.SamplesPerPixel]  # the autoencoder's lossless payload
    encrypted = through_bytes(encrypt_instance(original, key=key, model=model).dataset)
    _, payload = _open_payload(encrypted, key)
    frames = _pixels(original)
    assert payload.meta["payload_version"] == 2
    assert payload.meta["residual_predictor"] == [predictor] * frames.shape[0]
    restored = decrypt_instance(encrypted, keys=[key]).dataset
    np.testing.assert_array_equal(_pixels(through_bytes(restored)), frames)


@pytest.mark.slow
def test_signed_ct_picks_the_pixels_themselves_and_restores_every_value(key):
    from dicomcrypt.codec.coders import standard

    from helpers.corpus import sample

    original = pydicom.dcmread(sample("693_UNCR.dcm"))
    frames = _pixels(original)
    assert frames.dtype == np.int16 and frames.min() < 0
    sealed = encrypt_instance(original, key=key, mode="lossless", model=DEFAULT_MODELS[1])
    _, payload = _open_payload(sealed.dataset, key)
    assert payload.meta["residual_predictor"] == ["none"]
    assert payload.section("residual") == standard.encode_pixels(frames)  # what the standard mode stores
    assert sealed.metrics["predictor_none_frames"] == 1
    restored = decrypt_instance(through_bytes(sealed.dataset), keys=[key]).dataset
    np.testing.assert_array_equal(_pixels(through_bytes(restored)), frames)


def test_frames_stored_as_themselves_skip_the_decoder_but_not_the_model_check(key, monkeypatch):
    from dicomcrypt.codec.coders import lossy

    original = _load("MR_small.dcm")
    _force_predictor(monkeypatch, "none")
    encrypted = encrypt_instance(original, key=key, model=DEFAULT_MODELS[1]).dataset

    def no_decoder(*args, **kwargs):
        raise AssertionError("the decoder ran")

    monkeypatch.setattr(lossy, "reconstruct", no_decoder)
    np.testing.assert_array_equal(_pixels(decrypt_instance(encrypted, keys=[key]).dataset), _pixels(original))
    _reseal(encrypted, key, lambda payload: None, model_sha256=bytes(range(32)))
    with pytest.raises(ModelMismatchError):
        decrypt_instance(encrypted, keys=[key])


@pytest.mark.slow
def test_a_version_1_lossless_payload_still_restores(key, monkeypatch):
    original = _load("emri_small_jpeg_ls_lossless.dcm")
    _force_predictor(monkeypatch, "decoder")
    encrypted = encrypt_instance(original, key=key, model=DEFAULT_MODELS[1]).dataset

    def as_version_1(payload):  # version 1: no predictor key, every frame against the decoder
        payload.meta["payload_version"] = 1
        del payload.meta["residual_predictor"]

    _reseal(encrypted, key, as_version_1)
    assert _open_payload(encrypted, key)[1].meta["payload_version"] == 1
    np.testing.assert_array_equal(_pixels(decrypt_instance(encrypted, keys=[key]).dataset), _pixels(original))


def test_standard_payloads_are_still_written_as_version_1(key):
    _, payload = _open_payload(encrypt_instance(_load("MR_small.dcm"), key=key, mode="standard").dataset, key)
    assert payload.meta["payload_version"] == 1 and "residual_predictor" not in payload.meta


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"residual_predictor": ["wavelet"]}, "unknown residual predictor 'wavelet'"),
        ({"residual_predictor": None}, "without residual_predictor"),
        ({"payload_version": 1}, "residual_predictor in a version 1 payload"),
        ({"payload_version": 4}, "payload version 4 is not supported"),  # 3 is the wavelet codec's
    ],
)
def test_unknown_or_misplaced_predictors_are_refused(changes, message, key):
    from dicomcrypt.errors import PayloadFormatError

    encrypted = encrypt_instance(_load("MR_small.dcm"), key=key, model=DEFAULT_MODELS[1]).dataset

    def edit(payload):
        for name, value in changes.items():
            if value is None:
                del payload.meta[name]
            else:
                payload.meta[name] = value

    _reseal(encrypted, key, edit)
    with pytest.raises(PayloadFormatError, match=message):
        decrypt_instance(encrypted, keys=[key])


# -- decode limits and untrusted payloads (issue 12) -------------------------------------------


def test_decrypt_refuses_a_payload_over_the_callers_limits() -> None:
    from dicomcrypt.limits import DecodeLimits

    key = Key.generate()
    encrypted = encrypt_instance(pydicom.dcmread(get_testdata_file("CT_small.dcm")), key=key, mode="standard").dataset
    with pytest.raises(PayloadFormatError, match=r"declares 32768 bytes of pixels .* the limit is 1024 bytes"):
        decrypt_instance(encrypted, keys=key, limits=DecodeLimits(max_pixel_bytes=1024))
    assert decrypt_instance(encrypted, keys=key).action == "decrypted"


def test_pixels_their_declared_format_cannot_hold_are_a_damaged_payload() -> None:
    """A crafted payload can carry a digest that matches: 1-bit pixels holding 5 must still be refused."""
    from helpers import crafted

    from dicomcrypt.codec.coders.standard import encode_pixels

    base = crafted.template("standard")
    frames = np.full((1, 8, 8, 1), 5, np.uint8)
    meta = crafted.with_shape(base.meta, (1, 8, 8, 1))
    meta["pixel_format"].update(is_single_bit=True, bits_allocated=1, bits_stored=1, high_bit=0, pixel_representation=0)
    meta.update(dtype="|u1", digest=pixel_digest(frames))
    ds = crafted.crafted("standard", meta, {**base.sections, "pixels": encode_pixels(frames)})
    with pytest.raises(PayloadFormatError, match="cannot be written as declared .*1-bit pixel data must hold only 0"):
        decrypt_instance(ds, keys=crafted.KEY)


def test_the_pixel_digest_is_the_same_for_any_layout_and_byte_order() -> None:
    frames = np.random.default_rng(5).integers(0, 60000, size=(3, 5, 7, 3)).astype("<u2")
    expected = pixel_digest(frames)
    for variant in (frames.astype(">u2"), np.asfortranarray(frames), frames[:, ::-1][:, ::-1]):
        assert pixel_digest(variant) == expected


@pytest.mark.filterwarnings("ignore:A value of type")
def test_a_damaged_image_pixel_attribute_is_a_pixel_decode_error() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PixelPaddingValue = "not a number"
    with pytest.raises(PixelDecodeError, match="Image Pixel attributes cannot be read"):
        encrypt_instance(ds, key=Key.generate(), mode="standard")


@pytest.mark.parametrize(("field", "value"), [
    ("tags", ["!0280125"]), ("groups", "6000"), ("transfer_syntax", "1.2.3"), ("transfer_syntax", ["x"]),
])
def test_a_crafted_attribute_snapshot_is_a_damaged_payload(field, value) -> None:
    import json
    import struct

    from helpers import crafted

    base = crafted.template("standard")
    blob = base.sections["attributes"]
    size = struct.unpack_from("<I", blob, 8)[0]
    head = json.dumps({**json.loads(blob[12 : 12 + size]), field: value}).encode()
    attributes = blob[:8] + struct.pack("<I", len(head)) + head + blob[12 + size :]
    with pytest.raises(PayloadFormatError):
        decrypt_instance(crafted.crafted("standard", base.meta, {**base.sections, "attributes": attributes}),
                         keys=crafted.KEY)


# ----------------------------------------------------------------------------- output syntax (issue 15)

_ORIGINAL_SYNTAX = [
    # (file, what --output-syntax original writes it in)
    ("CT_small.dcm", pydicom.uid.ExplicitVRLittleEndian),
    ("MR_small_implicit.dcm", pydicom.uid.ImplicitVRLittleEndian),
    ("image_dfl.dcm", pydicom.uid.DeflatedExplicitVRLittleEndian),
    ("MR_small_RLE.dcm", pydicom.uid.RLELossless),
    ("emri_small_jpeg_ls_lossless.dcm", pydicom.uid.JPEGLSLossless),  # 10 frames
    ("MR_small_jp2klossless.dcm", JPEG2000Lossless),
    ("JPEG-LL.dcm", pydicom.uid.JPEGLSLossless),  # JPEG Lossless: no encoder, the lossless fallback
    ("SC_rgb_jpeg_dcmtk.dcm", pydicom.uid.JPEGLSLossless),  # lossy original: never re-encoded lossily
    ("MR_small_bigendian.dcm", pydicom.uid.ExplicitVRLittleEndian),  # retired: its little endian twin
]


@pytest.mark.parametrize(("name", "expected"), _ORIGINAL_SYNTAX, ids=[n for n, _ in _ORIGINAL_SYNTAX])
def test_output_syntax_original_writes_the_lossless_original_syntax_bit_exactly(name, expected, key):
    original = _load(name)
    sealed = encrypt_instance(original, key=key, mode="standard").dataset
    restored = through_bytes(decrypt_instance(through_bytes(sealed), keys=[key], output_syntax="original").dataset)
    assert restored.file_meta.TransferSyntaxUID == expected
    np.testing.assert_array_equal(_pixels(restored), _pixels(original))  # value by value, as written and read
    assert restored.SOPInstanceUID == original.SOPInstanceUID
    if expected == original.file_meta.TransferSyntaxUID:  # every other attribute as it was
        def attributes(ds):
            return {elem.tag: elem.value for elem in ds if elem.tag != 0x7FE00010}
        assert attributes(restored) == attributes(original)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("jpeg-ls", pydicom.uid.JPEGLSLossless), ("jpeg2000-lossless", JPEG2000Lossless),
     ("explicit-little", pydicom.uid.ExplicitVRLittleEndian)],
)
@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "SC_rgb.dcm", "emri_small_jpeg_ls_lossless.dcm"])
def test_a_chosen_output_syntax_restores_every_value(name, choice, expected, key):
    original = _load(name)
    sealed = encrypt_instance(original, key=key, mode="standard").dataset
    restored = through_bytes(decrypt_instance(through_bytes(sealed), keys=[key], output_syntax=choice).dataset)
    assert restored.file_meta.TransferSyntaxUID == expected
    np.testing.assert_array_equal(_pixels(restored), _pixels(original))
    if name == "SC_rgb.dcm" and choice == "jpeg2000-lossless":
        assert restored.PhotometricInterpretation == "YBR_RCT"  # the reversible colour transform


def test_pixels_no_encoder_takes_are_written_uncompressed(key):
    original = _load("liver_1frame.dcm")  # 1-bit segmentation: JPEG-LS cannot code it
    sealed = encrypt_instance(original, key=key, mode="standard").dataset
    restored = through_bytes(decrypt_instance(through_bytes(sealed), keys=[key], output_syntax="jpeg-ls").dataset)
    assert restored.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    np.testing.assert_array_equal(_pixels(restored), _pixels(original))


def test_without_an_output_syntax_restores_stay_uncompressed_as_before(key):
    """Library callers and the PACS hooks keep their behaviour unless they ask for a syntax."""
    sealed = encrypt_instance(_load("MR_small_RLE.dcm"), key=key, mode="standard").dataset
    restored = decrypt_instance(through_bytes(sealed), keys=[key]).dataset
    assert restored.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_a_lossy_restore_always_gets_the_same_derived_uid(key):
    """Re-restoring (or re-receiving) one encrypted instance files the same instance, not a new one."""
    original = _load("MR_small_jp2klossless.dcm")
    sealed = through_bytes(encrypt_instance(original, key=key, mode="lossy").dataset)
    first = decrypt_instance(sealed, keys=[key], output_syntax="original").dataset
    again = decrypt_instance(copy.deepcopy(sealed), keys=[key]).dataset
    assert first.SOPInstanceUID == again.SOPInstanceUID != original.SOPInstanceUID
    assert first.SOPInstanceUID.startswith("2.25.") and first.SOPInstanceUID.is_valid
    # A lossy restore is written losslessly, in the original's lossless syntax: stored as decoded
    assert first.file_meta.TransferSyntaxUID == JPEG2000Lossless
    np.testing.assert_array_equal(_pixels(through_bytes(first)), _pixels(again))
    rooted = decrypt_instance(sealed, keys=[key], uid_root="1.2.826.0.1.3680043.10.999").dataset
    assert rooted.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.999.") and len(rooted.SOPInstanceUID) <= 64
    assert rooted.SOPInstanceUID == decrypt_instance(sealed, keys=[key], uid_root="1.2.826.0.1.3680043.10.999"
                                                     ).dataset.SOPInstanceUID


def test_a_multi_frame_encrypted_file_is_about_its_payload_size(key):
    """The placeholder's frames are RLE compressed: the envelope, not them, is what the file holds."""
    original = _load("emri_small_jpeg_ls_lossless.dcm")
    sealed = encrypt_instance(original, key=key, mode="standard")
    size = len(to_bytes(sealed.dataset))
    assert size < 1.3 * sealed.metrics["envelope_bytes"] + 8000, (size, sealed.metrics["envelope_bytes"])


def _masked_bytes(ds: pydicom.Dataset) -> bytes:
    """The file bytes with the envelope zeroed: it is the only random part of an encryption."""
    ds = copy.deepcopy(ds)
    if (info := dicom.read_private_block(ds)) is not None:
        block = ds.private_block(dicom.PRIVATE_GROUP, dicom.PRIVATE_CREATOR)
        ds[block.get_tag(0x10)].value = bytes(len(info.envelope))
    return to_bytes(ds)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_bigendian.dcm", "SC_rgb_rle_2frame.dcm",
                                  "examples_overlay.dcm", "693_UNCR.dcm", "rtplan.dcm"])
def test_outputs_are_the_bytes_a_deep_copy_of_the_input_gives(name, key, monkeypatch):
    """The pipeline's cheap copy (issue 14) changes no output byte and never touches the input."""
    from helpers.corpus import read_quietly, sample

    original = read_quietly(sample(name))
    pristine = to_bytes(original) if "FileMetaInformationGroupLength" in original.file_meta else None
    before, other = copy.deepcopy(original), Key.generate()
    fast: dict[str, bytes] = {}
    for label in ("fast", "deepcopy"):
        if label == "deepcopy":
            monkeypatch.setattr(dicom, "independent_copy", copy.deepcopy)
        for mode in ("standard", "lossless"):
            sealed = encrypt_instance(original, key=key, mode=mode).dataset
            restored = decrypt_instance(sealed, keys=[key]).dataset
            passed = decrypt_instance(original, keys=[key]).dataset
            rekeyed = rekey_instance(sealed, keys=[key], to=[other]).dataset
            outputs = (_masked_bytes(sealed), to_bytes(restored), _masked_bytes(passed), _masked_bytes(rekeyed))
            if label == "fast":
                fast[mode] = b"|".join(outputs)
            else:
                assert b"|".join(outputs) == fast[mode], (name, mode)
    assert original == before, "the input dataset must not be modified"
    if pristine is not None:
        assert to_bytes(original) == pristine, "the input dataset must not be modified"
