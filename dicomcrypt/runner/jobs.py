"""What to do to every file of a batch: one typed, picklable job per operation.

A job carries everything it needs already loaded and checked (keys, recipients, certificates),
so it is built once, where the batch starts, and a bad key stops the batch before any file is
read. It pickles as key bytes, so each worker process receives it once (the local pool's
initializer; a cluster backend would scatter it) and never reads a key file.

- :class:`EncryptJob`: an :class:`~dicomcrypt.settings.EncryptionSettings` (targets, mode,
  model, latent format, identity protection). Its identity protection holds the run's one
  ``uid_secret``, so every worker gives a study the same replacement UIDs.
- :class:`DecryptJob`: the key ring that opens envelopes, and RSA identity keys.
- :class:`RekeyJob`: the key ring, the new targets, and whether the old stanzas stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from dicomcrypt.crypto import Key, KeyRing, Recipient
from dicomcrypt.crypto.cms import IdentityKey
from dicomcrypt.limits import DEFAULT_LIMITS, DecodeLimits
from dicomcrypt.settings import EncryptionSettings

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from dicomcrypt.dicom.output_syntax import OutputSyntax
    from dicomcrypt.pipeline import Outcome

__all__ = ["DecryptJob", "EncryptJob", "Job", "Operation", "RekeyJob"]

Operation = Literal["encrypt", "decrypt", "rekey"]


@dataclass(frozen=True)
class EncryptJob:
    """Encrypt every file as ``settings`` say."""

    settings: EncryptionSettings
    operation: ClassVar[Operation] = "encrypt"

    def apply(self, ds: Dataset) -> Outcome:
        from dicomcrypt import pipeline

        return pipeline.encrypt_instance(ds, settings=self.settings)


@dataclass(frozen=True)
class DecryptJob:
    """Restore every file with ``keys``; ``identity_keys`` also restore protected identities.
    ``output_syntax`` and ``uid_root``: see :func:`dicomcrypt.pipeline.decrypt_instance`."""

    keys: KeyRing
    identity_keys: tuple[IdentityKey, ...] = ()
    limits: DecodeLimits = DEFAULT_LIMITS
    output_syntax: OutputSyntax | None = None
    uid_root: str | None = None
    operation: ClassVar[Operation] = "decrypt"

    def apply(self, ds: Dataset) -> Outcome:
        from dicomcrypt import pipeline

        return pipeline.decrypt_instance(
            ds, keys=self.keys, identity_keys=self.identity_keys, limits=self.limits,
            output_syntax=self.output_syntax, uid_root=self.uid_root,
        )


@dataclass(frozen=True)
class RekeyJob:
    """Re-wrap every file's data key (opened with ``keys``) for ``to``; ``keep`` adds rather than replaces."""

    keys: KeyRing
    to: tuple[Key | Recipient, ...]
    keep: bool = False
    operation: ClassVar[Operation] = "rekey"

    def apply(self, ds: Dataset) -> Outcome:
        from dicomcrypt import pipeline

        return pipeline.rekey_instance(ds, keys=self.keys, to=self.to, keep=self.keep)


Job = EncryptJob | DecryptJob | RekeyJob
"""Any batch job: ``operation`` names it, ``apply(ds)`` runs it on one data set."""
