"""The recipe: encrypt and restore one DICOM instance.

This is the only module that knows every part. Encrypting an image instance::

    pixels ──read_frames──> frames (F, H, W, C) ──┬─ standard: JPEG-LS ───────────────┐
                                                  └─ model: normalise ─> encoder ─> latent
                                                       lossless: + each frame coded │
                                                       against the exact decoder's  │
                                                       prediction or as itself      │
    payload = meta (mode, pixel format, normalisation, digest) + sections <─────────┘
    envelope = AES-256-GCM(payload), bound to the instance UIDs
    output = original with a placeholder image + private block holding the envelope

Restoring runs the same steps backwards and, for exact modes, checks the SHA-256 digest of
the original pixels so a mismatch is an error and never a silent difference.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydicom.dataset import Dataset

from dicomcrypt import dicom
from dicomcrypt.codec import normalise, residual, standard
from dicomcrypt.crypto import Key, KeyRing, Recipient, RecipientKey
from dicomcrypt.dicom import encrypted_attributes
from dicomcrypt.dicom.private_block import check_readable_elements
from dicomcrypt.envelope import VERSION, Mode, instance_binding, open_envelope, read_header, rewrap, seal
from dicomcrypt.errors import (
    IntegrityError,
    InvalidInputError,
    NoPixelDataError,
    PayloadFormatError,
)
from dicomcrypt.identity_protection import (
    IDENTITY_RESTORED_NOTE,
    NOT_RESTORED_NOTE,
    IdentityKey,
    describe_identity_protection,
    IdentityProtection,
    original_private_slots_reserved,
    restore_identity,
)
from dicomcrypt.payload import Payload
from dicomcrypt.settings import EncryptionSettings, KeyArgument

FORMAT_VERSION = VERSION  # the private block's DicomCryptFormatVersion: the envelope version written
# Version 2 adds meta["residual_predictor"]. Only lossless payloads need it, so standard and
# lossy payloads are still written as version 1, which older readers open.
PAYLOAD_VERSION = 1
LOSSLESS_PAYLOAD_VERSION = 2
READABLE_PAYLOAD_VERSIONS = (1, 2)
LOSSY_METHOD = "DICOMCRYPT_AE"  # Lossy Image Compression Method (0028,2114), CS <= 16 chars
_NO_MODEL_SHA256 = bytes(32)

Action = Literal["encrypted", "decrypted", "rekeyed", "passed through"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one instance. ``dataset`` is new; the input is never modified."""

    dataset: Dataset
    action: Action
    mode: str | None = None
    note: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Inspection:
    """What an instance shows without a key."""

    encrypted: bool
    sop_class_uid: str
    modality: str
    has_pixel_data: bool
    format_version: int | None = None
    mode: str | None = None
    key_ids: tuple[str, ...] = ()
    model_id: str | None = None
    envelope_bytes: int | None = None
    placeholder: str | None = None
    identity: str | None = None  # who can restore a protected identity (PS3.15 Encrypted Attributes)


def encrypt_instance(
    ds: Dataset,
    settings: EncryptionSettings | None = None,
    *,
    key: KeyArgument = None,
    recipients: Iterable[Recipient | str] = (),
    mode: str | Mode = "lossless",
    model: str | None = None,
    latent_format: str = "u8",
    protect_identity: IdentityProtection | None = None,
) -> Outcome:
    """Encrypt the pixels of ``ds`` as ``settings`` say, or as the keywords say (the same fields).

    Callers that encrypt many instances build :class:`EncryptionSettings` once; the keywords are
    for one-off library use. ``key`` may be a :class:`KeyRing` from a keyring file: its current
    ``encrypt`` entries are used. Non-image instances pass through unchanged, unless identity
    protection is asked for: then their identifying attributes are still protected (see
    :mod:`dicomcrypt.identity_protection`). With identity protection the identity is protected
    first and the pixel envelope is bound to the replacement UIDs that stay in the clear, so the
    pixel key alone restores pixels.
    """
    if settings is None:
        settings = EncryptionSettings.build(
            key=key, recipients=recipients, mode=mode, model=model,
            latent_format=latent_format, protect_identity=protect_identity,
        )
    keys, recipients, requested = settings.keys, settings.recipients, settings.mode
    model, latent_format, protect_identity = settings.model, settings.latent_format, settings.identity
    if not dicom.has_pixel_data(ds):
        if _is_image_storage(ds):
            raise NoPixelDataError(
                f"{_sop_class_name(ds)} instance {ds.get('SOPInstanceUID', '?')} has no Pixel Data"
            )
        if protect_identity is not None:
            return Outcome(_protected_copy(ds, protect_identity), "encrypted", "identity",
                           note="no pixel data: identifying attributes encrypted only")
        return Outcome(copy.deepcopy(ds), "passed through", note="no pixel data: not an image")
    if dicom.read_private_block(ds) is not None:
        raise InvalidInputError("instance is already encrypted by dicomcrypt")
    protected = _protected_copy(ds, protect_identity) if protect_identity is not None else None

    started = time.perf_counter()
    frames, fmt = dicom.read_frames(ds)
    chosen, note = _choose_mode(requested, fmt)
    metrics: dict[str, float] = {"pixel_bytes": float(frames.nbytes), "read_s": time.perf_counter() - started}

    meta: dict[str, Any] = {
        "payload_version": PAYLOAD_VERSION,
        "pixel_format": dataclasses.asdict(fmt),
        "shape": list(frames.shape),
        "dtype": frames.dtype.str,
    }
    sections = {"attributes": dicom.snapshot_attributes(protected if protected is not None else ds)}
    if protected is not None:  # the CMS is unauthenticated (PS3.15): seal its digest
        meta["encrypted_attributes_sha256"] = encrypted_attributes.encrypted_attributes_digest(protected)
    model_id, model_sha256 = "", _NO_MODEL_SHA256

    started = time.perf_counter()
    if chosen is Mode.STANDARD:
        sections["pixels"] = standard.encode_pixels(frames)
    else:
        codec = _load_model(model, fmt.samples_per_pixel)
        model_id, model_sha256 = codec.info.model_id, codec.info.sha256
        norm = normalise.fit(frames, fmt.padding_value)
        meta["normalisation"] = norm.to_json()
        # Lossless: the residual carries the detail, so the model may ask for a coarser, smaller latent.
        levels = codec.lossless_levels if chosen is Mode.LOSSLESS and latent_format == "u8" else 256
        sections["latent"] = codec.encode(normalise.to_unit(frames, norm), latent_format=latent_format, levels=levels)
        metrics["latent_bytes"] = float(len(sections["latent"]))
        mask = normalise.padding_mask(frames, norm)
        if mask is not None:
            sections["padding"] = normalise.encode_mask(mask)
        if chosen is Mode.LOSSLESS:
            prediction = _reconstruct(codec, sections, norm, frames.shape, frames.dtype)
            sections["residual"], predictors = residual.encode(frames, prediction)
            meta["payload_version"] = LOSSLESS_PAYLOAD_VERSION
            meta["residual_predictor"] = predictors
            metrics["residual_bytes"] = float(len(sections["residual"]))
            metrics["predictor_none_frames"] = float(predictors.count(residual.NONE))
    if chosen is not Mode.LOSSY:
        meta["digest"] = pixel_digest(frames)
    metrics["encode_s"] = time.perf_counter() - started

    out = protected if protected is not None else copy.deepcopy(ds)
    dicom.apply_placeholder(out, fmt)
    started = time.perf_counter()
    plaintext = Payload(meta, sections).to_bytes()
    envelope = seal(
        plaintext,
        key=keys,
        recipients=recipients,
        mode=chosen,
        model_id=model_id,
        model_sha256=model_sha256,
        binding=instance_binding(*dicom.uids(out)),
    )
    metrics["encrypt_s"] = time.perf_counter() - started
    metrics["payload_bytes"] = float(len(plaintext))
    metrics["envelope_bytes"] = float(len(envelope))
    with original_private_slots_reserved(out, ds, dicom.PRIVATE_GROUP):
        dicom.write_private_block(
            out,
            dicom.PrivateInfo(
                format_version=FORMAT_VERSION,
                mode=chosen.name,
                key_ids=read_header(envelope).key_ids,
                model_id=model_id,
                envelope=envelope,
            ),
        )
    return Outcome(out, "encrypted", chosen.name.lower(), note, metrics)


def rekey_instance(
    ds: Dataset,
    *,
    keys: KeyRing | Key | RecipientKey | Iterable[Key | RecipientKey],
    to: Iterable[Key | Recipient | str],
    keep: bool = False,
) -> Outcome:
    """Re-wrap the data key of an encrypted instance for ``to``; the pixel ciphertext is not touched.

    ``keys`` must open the envelope (it is fully authenticated first). Without ``keep`` only
    ``to`` can open the result: that is how an old key is retired. Version-1 envelopes are
    re-sealed as version 2 (see :func:`dicomcrypt.envelope.rewrap`). Instances without a
    dicomcrypt block pass through.
    """
    info = dicom.read_private_block(ds)
    if info is None:
        return Outcome(copy.deepcopy(ds), "passed through", note="not encrypted by dicomcrypt")
    header = read_header(info.envelope)
    check_readable_elements(info, header)
    started = time.perf_counter()
    envelope = rewrap(info.envelope, keys=keys, binding=instance_binding(*dicom.uids(ds)), to=to, keep=keep)
    new_header = read_header(envelope)
    out = copy.deepcopy(ds)
    dicom.write_private_block(
        out,
        dataclasses.replace(info, format_version=new_header.version, key_ids=new_header.key_ids, envelope=envelope),
    )
    note = "" if header.version == new_header.version else f"version {header.version} envelope re-sealed as version {new_header.version}"
    return Outcome(out, "rekeyed", header.mode.name.lower(), note, {"rekey_s": time.perf_counter() - started})


def decrypt_instance(
    ds: Dataset,
    *,
    keys: KeyRing | Key | RecipientKey | Iterable[Key | RecipientKey],
    identity_keys: Iterable[IdentityKey] = (),
) -> Outcome:
    """Restore an instance encrypted by :func:`encrypt_instance`.

    Instances without a dicomcrypt block pass through unchanged (reported as such), so a
    folder mixing encrypted and plain objects can be restored in one run. An Encrypted
    Attributes Sequence (ours or another de-identifier's) is opened with ``identity_keys``;
    without them the pixels are still restored and ``note`` says the identity was not.
    """
    identity_keys = list(identity_keys)
    info = dicom.read_private_block(ds)
    if info is None:
        if identity_keys and encrypted_attributes.has_encrypted_attributes(ds):
            out = copy.deepcopy(ds)
            restore_identity(out, identity_keys)
            return Outcome(out, "decrypted", "identity", note=f"{IDENTITY_RESTORED_NOTE}; no dicomcrypt pixel envelope")
        if encrypted_attributes.has_encrypted_attributes(ds):
            return Outcome(copy.deepcopy(ds), "passed through", note=NOT_RESTORED_NOTE)
        return Outcome(copy.deepcopy(ds), "passed through", note="not encrypted by dicomcrypt")

    started = time.perf_counter()
    header, plaintext = open_envelope(info.envelope, keys=keys, binding=instance_binding(*dicom.uids(ds)))
    check_readable_elements(info, header)
    metrics: dict[str, float] = {"decrypt_s": time.perf_counter() - started}
    payload = Payload.from_bytes(plaintext)
    meta = payload.meta
    if meta.get("payload_version") not in READABLE_PAYLOAD_VERSIONS:
        raise PayloadFormatError(f"payload version {meta.get('payload_version')!r} is not supported")
    shape = tuple(int(n) for n in meta["shape"])
    dtype = np.dtype(meta["dtype"])
    fmt = dicom.PixelFormat(**meta["pixel_format"])

    started = time.perf_counter()
    if header.mode is Mode.STANDARD:
        frames = standard.decode_pixels(payload.section("pixels"), shape, dtype)
    else:
        codec = _load_model(header.model_id, fmt.samples_per_pixel)
        codec.check_identity(header.model_id, header.model_sha256)
        norm = normalise.Normalisation.from_json(meta["normalisation"])
        if header.mode is Mode.LOSSLESS:
            frames = _restore_lossless(codec, payload, norm, shape, dtype)
        else:
            frames = _reconstruct(codec, payload.sections, norm, shape, dtype)
    metrics["decode_s"] = time.perf_counter() - started
    if frames.shape != shape:
        raise PayloadFormatError(f"restored pixels have shape {frames.shape}, expected {shape}")
    if header.mode is not Mode.LOSSY and pixel_digest(frames) != meta.get("digest"):
        raise IntegrityError("restored pixels do not match the digest of the original pixels")
    _check_encrypted_attributes(ds, meta)

    out = copy.deepcopy(ds)
    dicom.remove_private_block(out)
    dicom.restore_attributes(out, payload.section("attributes"))
    dicom.write_frames(out, frames, fmt)
    note = _restore_identity(out, identity_keys)
    if header.mode is Mode.LOSSY:
        source_class, source_instance, _, _ = dicom.uids(out)  # the original UIDs once re-identified
        dicom.mark_lossy_derived(
            out,
            source_sop_class_uid=source_class,
            source_sop_instance_uid=source_instance,
            ratio=frames.nbytes / max(1, len(payload.section("latent"))),
            method=LOSSY_METHOD,
            description=f"Lossy reconstruction by dicomcrypt autoencoder {header.model_id}",
        )
    return Outcome(out, "decrypted", header.mode.name.lower(), note, metrics)


def _protected_copy(ds: Dataset, protection: IdentityProtection) -> Dataset:
    out = copy.deepcopy(ds)
    protection.protect(out)
    return out


def _check_encrypted_attributes(ds: Dataset, meta: dict[str, Any]) -> None:
    """The Encrypted Attributes Sequence must be the one sealed with the pixels, if one was."""
    expected = meta.get("encrypted_attributes_sha256")
    if expected is not None and expected != encrypted_attributes.encrypted_attributes_digest(ds):
        raise IntegrityError(
            "the Encrypted Attributes Sequence (0400,0500) is not the one sealed with the pixels: "
            "it was altered, removed or replaced"
        )


def _restore_identity(out: Dataset, identity_keys: list[IdentityKey]) -> str:
    """Re-identify ``out`` when keys are given; otherwise the note that says it was not."""
    if not encrypted_attributes.has_encrypted_attributes(out):
        return ""
    if not identity_keys:
        return NOT_RESTORED_NOTE
    restore_identity(out, identity_keys)
    return IDENTITY_RESTORED_NOTE


def encrypt_dataset(ds: Dataset, **kwargs: Any) -> Dataset:
    """Encrypted copy of ``ds`` (see :func:`encrypt_instance` for the arguments)."""
    return encrypt_instance(ds, **kwargs).dataset


def decrypt_dataset(ds: Dataset, **kwargs: Any) -> Dataset:
    """Restored copy of ``ds`` (see :func:`decrypt_instance` for the arguments)."""
    return decrypt_instance(ds, **kwargs).dataset


def inspect_dataset(ds: Dataset) -> Inspection:
    """Describe ``ds`` from its readable elements and envelope header; needs no key."""
    base = {
        "sop_class_uid": str(ds.get("SOPClassUID", "")),
        "modality": str(ds.get("Modality", "")),
        "has_pixel_data": dicom.has_pixel_data(ds),
        "identity": describe_identity_protection(ds),
    }
    info = dicom.read_private_block(ds)
    if info is None:
        return Inspection(encrypted=False, **base)
    header = read_header(info.envelope)
    return Inspection(
        encrypted=True,
        format_version=header.version,
        mode=header.mode.name.lower(),
        key_ids=tuple(header.key_ids),
        model_id=header.model_id or None,
        envelope_bytes=len(info.envelope),
        placeholder=f"{ds.get('Rows')}x{ds.get('Columns')}",
        **base,
    )


def pixel_digest(frames: np.ndarray) -> str:
    """SHA-256 over shape, dtype and little-endian values: what "identical pixels" means."""
    little = np.ascontiguousarray(frames, dtype=frames.dtype.newbyteorder("<"))
    digest = hashlib.sha256(b"dicomcrypt/v1/pixels\0")
    digest.update(f"{list(frames.shape)}|{little.dtype.str}\0".encode())
    digest.update(little.tobytes())
    return digest.hexdigest()


def _choose_mode(requested: Mode, fmt: "dicom.PixelFormat") -> tuple[Mode, str]:
    """Fall back to the standard codec for pixels the autoencoder cannot serve."""
    if requested is Mode.STANDARD or fmt.model_ready:
        return requested, ""
    return Mode.STANDARD, f"{_unsupported_reason(fmt)}: standard lossless codec used instead of {requested.name.lower()}"


def _unsupported_reason(fmt: "dicom.PixelFormat") -> str:
    if fmt.is_palette:
        return "palette colour"
    if fmt.is_float:
        return "floating-point pixels"
    if fmt.is_single_bit:
        return "1-bit pixels"
    if fmt.samples_per_pixel not in (1, 3):
        return f"{fmt.samples_per_pixel} samples per pixel"
    return f"{fmt.bits_allocated}-bit pixels"


def _sop_class_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID")
    return uid.name if uid is not None else "unknown SOP class"


def _is_image_storage(ds: Dataset) -> bool:
    """Image IODs require Pixel Data; other objects (SR, RT Plan, ...) pass through."""
    return "Image Storage" in _sop_class_name(ds)


def _residual_predictors(meta: dict[str, Any], frames: int) -> list[str]:
    """Version 1 coded every frame against the decoder; version 2 names the predictor per frame."""
    if meta["payload_version"] == 1:
        if "residual_predictor" in meta:
            raise PayloadFormatError("payload: residual_predictor in a version 1 payload")
        return [residual.DECODER] * frames
    if "residual_predictor" not in meta:
        raise PayloadFormatError("payload: lossless payload without residual_predictor")
    return residual.parse_predictors(meta["residual_predictor"], frames)


def _restore_lossless(
    codec: Any, payload: Payload, norm: normalise.Normalisation, shape: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """Exact pixels; the decoder runs only if some frame was coded against its prediction.

    When every frame is stored as itself the prediction is not needed, so the (slow) decoder is
    skipped. The caller has already checked the model named in the envelope, and the digest
    check that follows is the same either way.
    """
    predictors = _residual_predictors(payload.meta, shape[0])
    if residual.DECODER in predictors:
        prediction = _reconstruct(codec, payload.sections, norm, shape, dtype)
    else:
        payload.section("latent")  # still part of a well-formed lossless payload
        prediction = None
    return residual.decode(payload.section("residual"), predictors, prediction, shape, dtype)


def _reconstruct(
    codec: Any, sections: dict[str, bytes], norm: normalise.Normalisation, shape: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """The decoder's image in stored integers, with padding put back where the mask says.

    Sender (for the lossless residual) and receiver run exactly this, and every step is
    deterministic, so both get the same integers.
    """
    if "latent" not in sections:
        raise PayloadFormatError("payload: section 'latent' is missing")
    frames = normalise.from_unit(codec.decode(sections["latent"]), norm, dtype)
    if frames.shape != tuple(shape):
        raise PayloadFormatError(f"decoded latent has shape {frames.shape}, expected {tuple(shape)}")
    if "padding" in sections:
        if norm.padding is None:
            raise PayloadFormatError("payload: a padding mask without a padding value")
        frames[normalise.decode_mask(sections["padding"], frames.shape)] = norm.padding
    return frames


def _load_model(model_id: str | None, channels: int) -> Any:
    from dicomcrypt.codec.registry import load_model  # lazy: keeps torch out of key-only work

    return load_model(model_id or None, channels=channels)
