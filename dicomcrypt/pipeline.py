"""The recipe: encrypt and restore one DICOM instance.

This is the only module that knows every part, and it names no codec: each mode's coder
(:mod:`dicomcrypt.codec.coders`) turns frames into payload sections and back. Encrypting::

    settings ─> pass-through rules ─> identity protection (optional) ─> read_frames ─> choose mode
      ─> coder.pack(frames) ─> sections + PayloadMeta (pixel format, normalisation, digest)
      ─> envelope = AES-256-GCM(payload), bound to the instance UIDs
      ─> output = the instance with a placeholder image + private block holding the envelope

Restoring runs the same steps backwards: open, ``coder.unpack``, and, for exact coders, the
SHA-256 digest of the original pixels, so a mismatch is an error and never a silent difference.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from dicomcrypt import dicom
from dicomcrypt.codec.coders import Coder, CodingContext, Derivation, Packed, coder_for
from dicomcrypt.crypto import Key, KeyRing, Recipient, RecipientKey
from dicomcrypt.dicom import encrypted_attributes
from dicomcrypt.dicom.output_syntax import OutputSyntax, choose_transfer_syntax, encode_lossless
from dicomcrypt.dicom.private_block import check_readable_elements
from dicomcrypt.envelope import (
    VERSION,
    EnvelopeHeader,
    Mode,
    instance_binding,
    open_envelope,
    read_header,
    rewrap,
    seal,
)
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
    IdentityProtection,
    describe_identity_protection,
    original_private_slots_reserved,
    restore_identity,
)
from dicomcrypt.limits import DEFAULT_LIMITS, DecodeLimits
from dicomcrypt.payload import Payload, PayloadMeta
from dicomcrypt.settings import EncryptionSettings, KeyArgument
from dicomcrypt.timing import timed

FORMAT_VERSION = VERSION  # the private block's DicomCryptFormatVersion: the envelope version written
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
    quality: int | None = None,
    psnr: float | None = None,
    effort: str | None = None,
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
            latent_format=latent_format, protect_identity=protect_identity, quality=quality,
            psnr=psnr, effort=effort,
        )
    skipped = _not_an_image_to_encrypt(ds, settings.identity)
    if skipped is not None:
        return skipped
    out = _working_copy(ds, settings.identity)  # the envelope binds the UIDs that stay in clear
    metrics: dict[str, float] = {}
    with timed(metrics, "read_s"):
        frames, fmt = dicom.read_frames(ds)
        chosen, note = _choose_mode(settings.mode, fmt)
    metrics["pixel_bytes"] = float(frames.nbytes)
    coder = coder_for(chosen)
    with timed(metrics, "encode_s"):
        model = _load_model(settings.model, fmt.samples_per_pixel) if coder.needs_model else None
        context = CodingContext(model, settings.latent_format, metrics, quality=settings.quality,
                                psnr=settings.psnr, effort=settings.effort)
        packed = coder.pack(frames, fmt, context)
        meta = _payload_meta(frames, fmt, coder, packed, out if settings.identity is not None else None)
    model_id, model_sha256 = _model_identity(model)
    sections = {"attributes": dicom.snapshot_attributes(out), **packed.sections}
    with timed(metrics, "encrypt_s"):
        plaintext = Payload(meta.to_json(), sections).to_bytes()
        envelope = seal(
            plaintext, key=settings.keys, recipients=settings.recipients, mode=chosen,
            model_id=model_id, model_sha256=model_sha256, binding=instance_binding(*dicom.uids(out)),
        )
    metrics.update(payload_bytes=float(len(plaintext)), envelope_bytes=float(len(envelope)))
    _replace_pixels_by_envelope(out, ds, fmt, envelope)
    return Outcome(out, "encrypted", chosen.name.lower(), note, metrics)


def _not_an_image_to_encrypt(ds: Dataset, identity: IdentityProtection | None) -> Outcome | None:
    """The outcome for an instance whose pixels are not encrypted; None for an image to encrypt.

    Non-image instances pass through unchanged, or have only their identity protected; an
    image IOD without pixels and an instance encrypted already are refused.
    """
    if dicom.has_pixel_data(ds):
        if dicom.read_private_block(ds) is not None:
            raise InvalidInputError("instance is already encrypted by dicomcrypt")
        return None
    if _is_image_storage(ds):
        uid = ds.get("SOPInstanceUID", "?")
        raise NoPixelDataError(f"{_sop_class_name(ds)} instance {uid} has no Pixel Data")
    if identity is not None:
        return Outcome(_working_copy(ds, identity), "encrypted", "identity",
                       note="no pixel data: identifying attributes encrypted only")
    return Outcome(dicom.independent_copy(ds), "passed through", note="no pixel data: not an image")


def _working_copy(ds: Dataset, identity: IdentityProtection | None) -> Dataset:
    """A copy of ``ds`` to become the output, its identity protected when asked."""
    out = dicom.independent_copy(ds)
    if identity is not None:
        identity.protect(out)
    return out


def _payload_meta(
    frames: np.ndarray, fmt: dicom.PixelFormat, coder: Coder, packed: Packed, protected: Dataset | None
) -> PayloadMeta:
    """The coder's fields plus what every mode carries; the digest where the coder is exact."""
    return PayloadMeta.build(
        pixel_format=fmt,
        shape=frames.shape,
        dtype=frames.dtype,
        digest=pixel_digest(frames) if coder.exact else None,
        # The CMS is unauthenticated (PS3.15): the payload seals its digest.
        encrypted_attributes_sha256=(
            None if protected is None else encrypted_attributes.encrypted_attributes_digest(protected)
        ),
        **packed.meta,
    )


def _replace_pixels_by_envelope(out: Dataset, original: Dataset, fmt: dicom.PixelFormat, envelope: bytes) -> None:
    """The placeholder image, and the private block with the envelope and its readable copies."""
    header = read_header(envelope)
    dicom.apply_placeholder(out, fmt)
    with original_private_slots_reserved(out, original, dicom.PRIVATE_GROUP):
        dicom.write_private_block(
            out,
            dicom.PrivateInfo(
                format_version=FORMAT_VERSION,
                mode=header.mode.name,
                key_ids=header.key_ids,
                model_id=header.model_id,
                envelope=envelope,
            ),
        )


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
        return Outcome(dicom.independent_copy(ds), "passed through", note="not encrypted by dicomcrypt")
    header = read_header(info.envelope)
    check_readable_elements(info, header)
    metrics: dict[str, float] = {}
    with timed(metrics, "rekey_s"):
        envelope = rewrap(info.envelope, keys=keys, binding=instance_binding(*dicom.uids(ds)), to=to, keep=keep)
    new_header = read_header(envelope)
    out = dicom.independent_copy(ds)
    dicom.write_private_block(
        out,
        dataclasses.replace(info, format_version=new_header.version, key_ids=new_header.key_ids, envelope=envelope),
    )
    note = (
        ""
        if header.version == new_header.version
        else f"version {header.version} envelope re-sealed as version {new_header.version}"
    )
    return Outcome(out, "rekeyed", header.mode.name.lower(), note, metrics)


def decrypt_instance(
    ds: Dataset,
    *,
    keys: KeyRing | Key | RecipientKey | Iterable[Key | RecipientKey],
    identity_keys: Iterable[IdentityKey] = (),
    limits: DecodeLimits = DEFAULT_LIMITS,
    output_syntax: OutputSyntax | None = None,
    uid_root: str | None = None,
) -> Outcome:
    """Restore an instance encrypted by :func:`encrypt_instance`.

    Instances without a dicomcrypt block pass through unchanged (reported as such), so a
    folder mixing encrypted and plain objects can be restored in one run. An Encrypted
    Attributes Sequence (ours or another de-identifier's) is opened with ``identity_keys``;
    without them the pixels are still restored and ``note`` says the identity was not.
    The payload is untrusted input (anyone may seal for a public recipient): what it declares
    is checked against ``limits`` before anything is allocated or decoded.

    ``output_syntax`` (:mod:`dicomcrypt.dicom.output_syntax`) says which transfer syntax the
    restored pixels are written in; None writes them uncompressed (a native original keeps its
    syntax). A lossy restore's new SOP Instance UID is derived from the source UID and the
    payload, under ``uid_root`` or in the ``2.25`` form, so it is the same on every restore.
    """
    identity_keys = list(identity_keys)
    info = dicom.read_private_block(ds)
    if info is None:
        return _without_envelope(ds, identity_keys)
    metrics: dict[str, float] = {}
    with timed(metrics, "decrypt_s"):
        header, plaintext = open_envelope(info.envelope, keys=keys, binding=instance_binding(*dicom.uids(ds)))
        check_readable_elements(info, header)
    payload = Payload.from_bytes(plaintext, limits)
    meta = PayloadMeta.from_json(payload.meta, limits)
    coder = coder_for(header.mode)
    with timed(metrics, "decode_s"):
        model = _checked_model(header, meta.pixel_format.samples_per_pixel) if coder.needs_model else None
        frames = coder.unpack(payload.sections, meta, CodingContext(model, metrics=metrics, limits=limits))
    _check_restored(ds, frames, meta, coder)

    out = dicom.independent_copy(ds)
    dicom.remove_private_block(out)
    dicom.restore_attributes(out, payload.section("attributes"))
    _check_bound_identity(out, ds)
    original_syntax = dicom.transfer_syntax(out)  # the snapshot put the original's back
    _write_restored_frames(out, frames, meta)
    note = _restore_identity(out, identity_keys)
    derivation = coder.derivation(frames, payload.sections, header.model_id)
    if derivation is not None:
        _mark_derived(out, derivation, hashlib.sha256(plaintext).digest(), uid_root)
    if output_syntax is not None:
        with timed(metrics, "output_encode_s"):
            target = choose_transfer_syntax(output_syntax, original_syntax)
            encode_lossless(out, frames, target)
    return Outcome(out, "decrypted", header.mode.name.lower(), note, metrics)


def _write_restored_frames(out: Dataset, frames: np.ndarray, meta: PayloadMeta) -> None:
    """The restored pixels into ``out``; pixels their declared format cannot hold (a crafted,
    digest-consistent payload can declare 1-bit data holding 5, or a bogus transfer syntax) are a
    damaged payload."""
    try:
        dicom.write_frames(out, frames, meta.pixel_format)
    except ValueError as exc:
        raise PayloadFormatError(f"payload: the restored pixels cannot be written as declared ({exc})") from exc


def _without_envelope(ds: Dataset, identity_keys: list[IdentityKey]) -> Outcome:
    """An instance with no pixel envelope: re-identified when it can be, else passed through."""
    protected = encrypted_attributes.has_encrypted_attributes(ds)
    if protected and identity_keys:
        out = dicom.independent_copy(ds)
        restore_identity(out, identity_keys)
        return Outcome(out, "decrypted", "identity", note=f"{IDENTITY_RESTORED_NOTE}; no dicomcrypt pixel envelope")
    note = NOT_RESTORED_NOTE if protected else "not encrypted by dicomcrypt"
    return Outcome(dicom.independent_copy(ds), "passed through", note=note)


def _check_restored(ds: Dataset, frames: np.ndarray, meta: PayloadMeta, coder: Coder) -> None:
    """The restored pixels have the original's shape and, from an exact coder, its digest."""
    if frames.shape != meta.shape:
        raise PayloadFormatError(f"restored pixels have shape {frames.shape}, expected {meta.shape}")
    if coder.exact and pixel_digest(frames) != meta.digest:
        raise IntegrityError("restored pixels do not match the digest of the original pixels")
    _check_encrypted_attributes(ds, meta)


def _check_bound_identity(restored: Dataset, encrypted: Dataset) -> None:
    """The restored instance is the one the envelope authenticated: same SOP Class/Instance,
    Study and Series UIDs. The payload is sealed by whoever knows a public recipient string, so
    nothing in it may rename the instance (a lossy restore's new UID comes later, from us)."""
    bound, restored_uids = dicom.uids(encrypted), dicom.uids(restored)
    changed = [name for name, a, b in zip(_IDENTITY_NAMES, bound, restored_uids) if a != b]
    if changed:
        raise PayloadFormatError(
            f"the payload would change the {', '.join(changed)} the envelope is bound to"
        )


_IDENTITY_NAMES = ("SOP Class UID", "SOP Instance UID", "Study Instance UID", "Series Instance UID")


def _check_encrypted_attributes(ds: Dataset, meta: PayloadMeta) -> None:
    """The Encrypted Attributes Sequence must be the one sealed with the pixels, if one was."""
    expected = meta.encrypted_attributes_sha256
    if expected is not None and expected != encrypted_attributes.encrypted_attributes_digest(ds):
        raise IntegrityError(
            "the Encrypted Attributes Sequence (0400,0500) is not the one sealed with the pixels: "
            "it was altered, removed or replaced"
        )


def _mark_derived(out: Dataset, derivation: Derivation, payload_sha256: bytes, uid_root: str | None) -> None:
    """DICOM's rules for a lossy result: a new instance that references its source, its UID
    derived from the source's and the payload (the same on every restore)."""
    source_class, source_instance, _, _ = dicom.uids(out)  # the original UIDs once re-identified
    dicom.mark_lossy_derived(
        out,
        source_sop_class_uid=source_class,
        source_sop_instance_uid=source_instance,
        new_sop_instance_uid=dicom.derived_instance_uid(source_instance, payload_sha256, uid_root),
        ratio=derivation.ratio,
        method=derivation.method,
        description=derivation.description,
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
    base: dict[str, Any] = {
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
    """SHA-256 over shape, dtype and little-endian values: what "identical pixels" means.

    Hashed a frame at a time from the array's own memory: no second full copy of the image
    (a frame is copied only when it is not little endian and contiguous already).
    """
    little_dtype = frames.dtype.newbyteorder("<")
    digest = hashlib.sha256(b"dicomcrypt/v1/pixels\0")
    digest.update(f"{list(frames.shape)}|{little_dtype.str}\0".encode())
    for frame in frames:
        digest.update(np.ascontiguousarray(frame, dtype=little_dtype).reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def _choose_mode(requested: Mode, fmt: dicom.PixelFormat) -> tuple[Mode, str]:
    """Fall back to the standard codec for pixels the autoencoder cannot serve."""
    if requested is Mode.STANDARD or fmt.model_ready:
        return requested, ""
    reason = _unsupported_reason(fmt)
    return Mode.STANDARD, f"{reason}: standard lossless codec used instead of {requested.name.lower()}"


def _unsupported_reason(fmt: dicom.PixelFormat) -> str:
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
    return uid.name if isinstance(uid, UID) else "unknown SOP class"  # a damaged file may hold several


def _is_image_storage(ds: Dataset) -> bool:
    """Image IODs require Pixel Data; other objects (SR, RT Plan, ...) pass through."""
    return "Image Storage" in _sop_class_name(ds)


def _load_model(model_id: str | None, channels: int) -> Any:
    from dicomcrypt.codec.registry import load_codec  # lazy: keeps torch out of key-only work

    return load_codec(model_id or None, channels=channels)


def _checked_model(header: EnvelopeHeader, channels: int) -> Any:
    """The model the envelope names, refused unless its weights are the ones it was sealed with."""
    model = _load_model(header.model_id, channels)
    model.check_identity(header.model_id, header.model_sha256)
    return model


def _model_identity(model: Any) -> tuple[str, bytes]:
    """(model id, weights SHA-256) for the envelope header; empty and zeros without a model."""
    if model is None:
        return "", _NO_MODEL_SHA256
    return model.info.model_id, model.info.sha256
