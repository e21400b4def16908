"""Received bytes -> what to store: the one contract behind ``serve`` and every PACS hook.

A node that receives DICOM instances (the ``serve`` SCP, a PACS storage hook, a DICOMweb STOW
endpoint) hands each one to :func:`receive` with the :class:`ReceivePolicy` it was configured
with, and acts on the :class:`Decision`. Filing, duplicates, forwarding, quarantine and the
answer on the wire stay with the caller; so do checks that need the transport's own request
(``serve`` compares the data set with the SOP Class/Instance UIDs its C-STORE request announced,
PS3.4 B.2.3, before calling here)::

    received bytes ──decode whole──> data set
        ├─ dicomcrypt envelope (readable private elements must agree with its header)
        │     ├─ store "restored":  decrypt_instance, written in policy.output_syntax
        │     │                     (None: little endian, undeflated, uncompressed)
        │     └─ store "encrypted": kept as received; authenticated when keys are given
        └─ no envelope: a non-image passes through; a plain image is refused
                        unless accept_plain

Inputs
------
``data`` : bytes
    The instance as received, as DICOM Part 10 bytes (preamble, ``DICM``, File Meta Information,
    data set). A kept or passed-through instance is ``data`` itself, the same object.
``policy`` : :class:`ReceivePolicy`
    What the receiver wants: restore or keep encrypted, its keys, whether plain images are accepted.
``dataset`` : pydicom ``Dataset``, optional
    The same instance already decoded, with ``file_meta`` (``serve`` has it from pynetdicom's
    ``event.dataset`` and ``event.file_meta``); without it ``data`` is parsed. Either way it is
    decoded whole before anything is decided, so a damaged data set is refused here and not
    half way through. It is never modified.

Outcomes (:attr:`Decision.action`)
----------------------------------
``"restored"``, status ``0x0000``
    Encrypted by dicomcrypt and ``policy.store == "restored"``: authenticated, decrypted and
    rebuilt (lossless and standard pixels checked against their digest; lossy: a derived
    instance with a new SOP Instance UID, derived: the same on every restore). ``dataset`` is the
    restored data set, ``data`` its Part 10 bytes: in the transfer syntax ``policy.output_syntax``
    chooses, never big endian; without one in Explicit (or Implicit) VR Little Endian, never deflated.
``"kept encrypted"``, status ``0x0000``
    Encrypted by dicomcrypt and ``policy.store == "encrypted"``: the envelope header parses and
    the readable private elements agree with it; with ``policy.keys`` the envelope is also
    authenticated (opened and bound to the instance's UIDs), so a vault keeps only what
    ``decrypt`` will open. ``data`` is the input bytes, ``dataset`` the received data set.
``"passed through"``, status ``0x0000``
    No dicomcrypt envelope, and either no pixel data (SR, RT Plan, ...) or ``policy.accept_plain``.
    ``data`` is the input bytes, ``dataset`` the received data set.
``"refused"``
    ``status`` and ``comment`` (a valid Error Comment, at most 64 characters, no key material)
    say why; ``error`` is the exception behind it, for callers that raise or log it; ``data`` is
    empty; ``dataset`` is the received data set if it decoded, else None. The statuses, all from
    :mod:`dicomcrypt.status` (:data:`~dicomcrypt.status.RECEIVE_STATUSES`):

    - ``0xC001`` DECRYPTION_FAILED: authentication failed (wrong key, tampered ciphertext, edited
      bound UIDs) or readable elements that disagree with the header; one constant comment.
    - ``0xC002`` UNKNOWN_KEY: no key in ``policy.keys`` for the envelope's key ids (named).
    - ``0xC003`` ENVELOPE_DAMAGED: malformed envelope or payload, unknown version or model,
      restored pixels that miss their digest.
    - ``0xC004`` CANNOT_UNDERSTAND: not Part 10 bytes, or a data set that does not decode.
    - ``0xC005`` NOT_ENCRYPTED: a plain image, ``policy.accept_plain`` false.
    - ``0xA700`` OUT_OF_RESOURCES: an ``OSError`` on the way (the sender may retry).
    - ``0x0110`` PROCESSING_FAILURE: anything unexpected (a bug); ``error`` has it.

:func:`receive` never raises for an instance: every failure is a refused :class:`Decision`.
It is safe to call from several threads at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from dicomcrypt import dicom
from dicomcrypt.crypto import KeyRing
from dicomcrypt.dicom.derived import check_uid_root
from dicomcrypt.dicom.encoding import is_big_endian, set_transfer_syntax
from dicomcrypt.dicom.encrypted_attributes import has_encrypted_attributes
from dicomcrypt.dicom.output_syntax import OutputSyntax, check_output_syntax
from dicomcrypt.dicom.private_block import check_readable_elements
from dicomcrypt.envelope import instance_binding, open_envelope, read_header
from dicomcrypt.errors import InvalidInputError, NotDicomError, NotEncryptedError, PayloadFormatError
from dicomcrypt.files import decode_whole, dicom_to_bytes, read_dicom_bytes
from dicomcrypt.identity_protection import NOT_RESTORED_NOTE
from dicomcrypt.limits import DEFAULT_LIMITS, DecodeLimits
from dicomcrypt.status import SUCCESS, StoreStatus, status_for_error

__all__ = ["Decision", "ReceiveAction", "ReceivePolicy", "receive"]

ReceiveAction = Literal["restored", "kept encrypted", "passed through", "refused"]
STORE_CHOICES = ("restored", "encrypted")


@dataclass(frozen=True)
class ReceivePolicy:
    """What a receiver wants done with instances; valid once built (see the module docstring).

    ``store``: ``"restored"`` (decrypt what arrives encrypted; needs ``keys``) or ``"encrypted"``
    (keep it as received, a vault; ``keys`` optional, then used to authenticate).
    ``accept_plain``: accept images without an envelope as received, instead of refusing them.
    ``limits``: what a payload may declare before it is refused unread (:mod:`dicomcrypt.limits`).
    ``output_syntax``: the transfer syntax restored instances are written in
    (:mod:`dicomcrypt.dicom.output_syntax`); None: uncompressed, as before the option existed.
    ``uid_root``: the UID root of a lossy restore's derived SOP Instance UID (None: ``2.25``).
    """

    store: Literal["restored", "encrypted"] = "restored"
    keys: KeyRing | None = None
    accept_plain: bool = False
    limits: DecodeLimits = DEFAULT_LIMITS
    output_syntax: OutputSyntax | None = None
    uid_root: str | None = None

    def __post_init__(self) -> None:
        if self.store not in STORE_CHOICES:
            raise InvalidInputError(f"receive policy: store must be 'restored' or 'encrypted', not {self.store!r}")
        if self.keys is not None and not isinstance(self.keys, KeyRing):
            raise TypeError("receive policy: keys is a KeyRing")
        if self.store == "restored" and (self.keys is None or not self.keys.key_ids):
            raise InvalidInputError("receive policy: restoring needs at least one key")
        if not isinstance(self.limits, DecodeLimits):
            raise TypeError("receive policy: limits is a DecodeLimits")
        if self.output_syntax is not None:
            check_output_syntax(self.output_syntax)
        if self.uid_root is not None:
            check_uid_root(self.uid_root)


@dataclass(frozen=True)
class Decision:
    """What to do with one received instance (every field is described in the module docstring)."""

    action: ReceiveAction
    status: StoreStatus
    data: bytes
    """Part 10 bytes to store: restored bytes, or the input object itself; empty when refused."""
    dataset: Dataset | None
    """The data set ``data`` holds; when refused, the received one if it decoded."""
    mode: str | None = None
    """The envelope's mode (``lossless``, ``lossy``, ``standard``); None without an envelope."""
    comment: str = ""
    """Error Comment (0000,0902) of a refusal."""
    note: str = ""
    """Why an instance passed through, or what a restore could not do (identity not restored)."""
    error: Exception | None = None
    """The failure behind a refusal."""
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        return self.action == "refused"


def receive(data: bytes, policy: ReceivePolicy, *, dataset: Dataset | None = None) -> Decision:
    """Decide what to store for one received instance; never raises for the instance itself."""
    received: Dataset | None = None
    try:
        received = _decoded_whole(data, dataset)
        return _decide(data, received, policy)
    except Exception as exc:  # noqa: BLE001 - every failure is a refusal with a status
        status, comment = status_for_error(exc)
        return Decision("refused", status, b"", received, comment=comment, error=exc)


def _decide(data: bytes, ds: Dataset, policy: ReceivePolicy) -> Decision:
    info = dicom.read_private_block(ds)
    if info is None:
        if dicom.has_pixel_data(ds) and not policy.accept_plain:
            raise NotEncryptedError("plain image refused: not encrypted by dicomcrypt")
        note = NOT_RESTORED_NOTE if has_encrypted_attributes(ds) else "not encrypted by dicomcrypt"
        return Decision("passed through", SUCCESS, data, ds, note=note)
    if policy.store == "encrypted":
        header = read_header(info.envelope)
        if policy.keys is not None:  # a vault with a key keeps only what it can open
            header, _ = open_envelope(info.envelope, keys=policy.keys, binding=instance_binding(*dicom.uids(ds)))
        check_readable_elements(info, header)
        return Decision("kept encrypted", SUCCESS, data, ds, mode=header.mode.name.lower())

    from dicomcrypt.pipeline import decrypt_instance  # the codec only where something is restored

    assert policy.keys is not None  # ReceivePolicy: restoring has keys
    outcome = decrypt_instance(
        ds, keys=policy.keys, limits=policy.limits, output_syntax=policy.output_syntax, uid_root=policy.uid_root
    )
    restored = outcome.dataset
    _check_same_instance(ds, restored, lossy=outcome.mode == "lossy")
    if policy.output_syntax is None:  # else the chosen output syntax stands (never big endian)
        _normalise_encoding(restored)
    return Decision(
        "restored", SUCCESS, dicom_to_bytes(restored), restored,
        mode=outcome.mode, note=outcome.note, metrics=dict(outcome.metrics),
    )


def _check_same_instance(received: Dataset, restored: Dataset, *, lossy: bool) -> None:
    """What is filed is the instance that was received (and, for ``serve``, the one its C-STORE
    request named): the only difference allowed is the new SOP Instance UID of a lossy restore."""
    before, after = dicom.uids(received), dicom.uids(restored)
    same = [a == b for a, b in zip(before, after)]
    if lossy:
        same[1] = True
    if not all(same):
        raise PayloadFormatError("restored instance has other UIDs than the one received")


def _decoded_whole(data: bytes, dataset: Dataset | None) -> Dataset:
    """The received data set, every element decoded now (:func:`files.decode_whole`) so a damaged
    one fails here; parsing ``data`` decodes it whole already."""
    ds = read_dicom_bytes(data) if dataset is None else decode_whole(dataset)
    if len(ds) == 0:
        raise NotDicomError("data set is empty")
    return ds


def _normalise_encoding(ds: Dataset) -> None:
    """Restored instances are stored little endian and undeflated (the same values, simpler bytes)."""
    if is_big_endian(ds):
        dicom.convert_to_little_endian(ds)
    tsyntax = dicom.transfer_syntax(ds)
    if tsyntax is not None and UID(tsyntax).is_deflated:
        set_transfer_syntax(ds, ExplicitVRLittleEndian)
        ds.set_original_encoding(False, True, ds.original_character_set)
