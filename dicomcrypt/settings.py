"""Who to encrypt for, and how: one settings object that every encrypting caller builds once.

``encrypt`` (the batch runner), ``send`` (its sealing workers), the storage hooks and the library
API all describe an encryption the same way, with :class:`EncryptionSettings`:

- **targets**: site keys and public recipients (at least one, at most
  :data:`~dicomcrypt.envelope.MAX_STANZAS` together);
- **mode**: lossless (default), lossy or standard; **model**: a model id, or None for the default
  model of the image's colour type (the wavelet codec); **latent_format**: ``u8`` or ``f16``
  (autoencoder models); **quality**: 1..100 for the lossy wavelet codec, None for its default, or
  **psnr**: a target in dB that the codec searches its step for instead;
  **effort**: how hard the lossless mode of the wavelet codec looks for each frame's smallest
  exact coding (:data:`EFFORTS`), None for its default; an encoder setting only, nothing
  records it and no decoder needs it;
- **identity**: PS3.15 identity protection, or None.

It is frozen, picklable (keys, recipients and certificates pickle as their bytes, so a worker
process gets the same object) and valid once built, as highdicom builds its objects: a bad mode,
an empty or oversized target set or an unknown latent format raises
:class:`~dicomcrypt.errors.InvalidInputError` here, before any file is read.

Duplicate targets have one rule. A key id is a digest of the key, so the same id twice is the
same target: it is one stanza, whichever sources named it (a keyring's ``encrypt`` list and an
explicit recipient, say). Only a repeat *within the recipients the caller listed* is refused,
because there it is a typo that may hide a recipient the caller meant to add.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from dicomcrypt.crypto import Key, KeyRing, Recipient
from dicomcrypt.envelope import MAX_STANZAS, Mode
from dicomcrypt.errors import InvalidInputError

if TYPE_CHECKING:
    from dicomcrypt.identity_protection import IdentityProtection

T = TypeVar("T", Key, Recipient)

__all__ = ["EFFORTS", "EncryptionSettings", "LATENT_FORMATS", "KeyArgument", "parse_mode"]

LATENT_FORMATS = ("u8", "f16")
"""How a latent is stored (docs/format.md): 8-bit affine per frame and channel, or IEEE half."""

MIN_PSNR_DB, MAX_PSNR_DB = 20.0, 100.0
"""A ``psnr`` target's range: below 20 dB nothing is diagnostic, above 100 the lossless mode is the answer."""

EFFORTS = ("fast", "balanced", "smallest")
"""Exact-mode effort of the wavelet codec, cheapest first: which codings each frame tries
(:data:`dicomcrypt.codec.coders.wavelet.EXACT_EFFORTS`; docs/codec.md gives sizes and times)."""

KeyArgument = Key | KeyRing | Iterable[Key] | None
"""What ``key=`` accepts: a site key, several, or a keyring whose ``encrypt`` list is used."""


def parse_mode(mode: str | Mode) -> Mode:
    """``"lossless"``, ``"lossy"``, ``"standard"`` (any case) or a :class:`Mode`."""
    if isinstance(mode, Mode):
        return mode
    try:
        return Mode[str(mode).upper()]
    except KeyError:
        choices = ", ".join(m.name.lower() for m in Mode)
        raise InvalidInputError(f"unknown mode {mode!r}; choose one of {choices}") from None


@dataclass(frozen=True)
class EncryptionSettings:
    """Targets and treatment of an encryption; build it with :meth:`build` from loose arguments."""

    keys: tuple[Key, ...] = ()
    recipients: tuple[Recipient, ...] = ()
    mode: Mode = Mode.LOSSLESS
    model: str | None = None
    latent_format: str = "u8"
    identity: IdentityProtection | None = None
    quality: int | None = None
    psnr: float | None = None
    effort: str | None = None

    def __post_init__(self) -> None:
        if not all(isinstance(k, Key) for k in self.keys) or not all(isinstance(r, Recipient) for r in self.recipients):
            raise TypeError("EncryptionSettings: keys are Key objects, recipients are Recipient objects")
        object.__setattr__(self, "keys", tuple(self.keys))
        object.__setattr__(self, "recipients", tuple(self.recipients))
        if not isinstance(self.mode, Mode):
            raise TypeError("EncryptionSettings.mode is a Mode (use build() or parse_mode() for names)")
        object.__setattr__(self, "model", self.model or None)
        targets = self.key_ids
        if not targets:
            raise InvalidInputError("nothing to encrypt for: give a site key, a recipient, or both")
        if len(set(targets)) != len(targets):
            raise InvalidInputError("the same key or recipient appears twice in the encryption targets")
        if len(targets) > MAX_STANZAS:
            raise InvalidInputError(
                f"{len(targets)} keys and recipients: an envelope holds at most {MAX_STANZAS} key stanzas"
            )
        if self.quality is not None:
            from dicomcrypt.codec.wavelet.model import check_quality

            object.__setattr__(self, "quality", check_quality(self.quality))
        if self.psnr is not None:
            object.__setattr__(self, "psnr", _check_psnr(self.psnr, self.quality))
        if self.effort is not None and self.effort not in EFFORTS:
            raise InvalidInputError(f"unknown effort {self.effort!r}; choose one of {', '.join(EFFORTS)}")
        if self.latent_format not in LATENT_FORMATS:
            raise InvalidInputError(
                f"unknown latent format {self.latent_format!r}; choose one of {', '.join(LATENT_FORMATS)}"
            )

    @classmethod
    def build(
        cls,
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
    ) -> EncryptionSettings:
        """Settings from the arguments callers pass around (see the module docstring for duplicates).

        ``key`` may be a :class:`KeyRing`: its current ``encrypt`` entries are the targets (keys
        and recipients). ``recipients`` may be ``dcrecip1...`` strings. Raises
        :class:`InvalidInputError` (nothing to encrypt for, too many targets, a listed recipient
        repeated, unknown mode, latent format or effort, a quality outside 1..100, a PSNR target
        outside its range or beside a quality) and :class:`RecipientFormatError`. ``quality`` and
        ``psnr`` (a target in dB over the image's range, instead of a quality) apply to the lossy
        mode of the wavelet codec, ``effort`` to its lossless mode.
        """
        listed = [Recipient.parse(r) if isinstance(r, str) else r for r in recipients]
        if not all(isinstance(r, Recipient) for r in listed):
            raise TypeError("recipients= takes Recipient objects or 'dcrecip1...' strings")
        if len({r.key_id for r in listed}) != len(listed):
            raise InvalidInputError("the same recipient was given twice")
        keys, ring_recipients = _key_targets(key)
        return cls(
            keys=_unique(keys),
            recipients=_unique([*ring_recipients, *listed]),
            mode=parse_mode(mode),
            model=model,
            latent_format=latent_format,
            identity=protect_identity,
            quality=quality,
            psnr=psnr,
            effort=effort,
        )

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Key ids of every target, keys first: the stanzas an envelope will carry."""
        return tuple(k.key_id for k in self.keys) + tuple(r.key_id for r in self.recipients)


def _key_targets(key: KeyArgument) -> tuple[list[Key], list[Recipient]]:
    if key is None:
        return [], []
    if isinstance(key, KeyRing):
        if not key.encrypt_to:
            raise InvalidInputError(
                "this key ring names no current encryption key (a keyring file's 'encrypt' list); "
                "pass key= or recipients="
            )
        return (
            [t for t in key.encrypt_to if isinstance(t, Key)],
            [t for t in key.encrypt_to if isinstance(t, Recipient)],
        )
    if isinstance(key, Key):
        return [key], []
    keys = list(key)
    if not all(isinstance(k, Key) for k in keys):
        raise TypeError(
            "key= takes Key objects or a KeyRing; recipients= takes Recipient objects or 'dcrecip1...' strings"
        )
    return keys, []


def _unique(targets: Iterable[T]) -> tuple[T, ...]:
    """The first target of each key id, in order: the same id is the same key."""
    first: dict[str, T] = {}
    for target in targets:
        first.setdefault(target.key_id, target)
    return tuple(first.values())


def _check_psnr(psnr: object, quality: int | None) -> float:
    """A PSNR target is one number in a range the lossy codec can aim at, and replaces the quality."""
    if quality is not None:
        raise InvalidInputError("give a quality or a PSNR target, not both: each sets the lossy step")
    if isinstance(psnr, bool) or not isinstance(psnr, (int, float)) or not MIN_PSNR_DB <= psnr <= MAX_PSNR_DB:
        raise InvalidInputError(
            f"PSNR target {psnr!r}: expected a number of dB from {MIN_PSNR_DB:g} to {MAX_PSNR_DB:g}"
        )
    return float(psnr)
