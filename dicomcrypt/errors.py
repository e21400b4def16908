"""One error hierarchy for the whole package.

Every failure a user can cause raises a subclass of :class:`DicomCryptError`, so callers
(the CLI, a PACS hook, a DIMSE handler) can catch one type and map it to an exit code or a
status. Messages name the file, key id or model involved, never key material or patient data.
"""

from __future__ import annotations

from pathlib import Path


class DicomCryptError(Exception):
    """Base class of every error raised on purpose by dicomcrypt."""


class InvalidInputError(DicomCryptError):
    """The input is not something dicomcrypt can work on."""


class NotDicomError(InvalidInputError):
    """The input is not a DICOM file (no preamble/DICM, or unparseable)."""


class NoPixelDataError(InvalidInputError):
    """An operation that needs pixels met an instance without Pixel Data."""


class PixelDecodeError(InvalidInputError):
    """The pixel data could not be decoded (corrupt or unreadable compressed frame)."""


class UnsupportedImageError(InvalidInputError):
    """The image uses a pixel layout this version cannot encode."""


class NotEncryptedError(InvalidInputError):
    """Decryption was asked of an instance that carries no dicomcrypt envelope."""


class EnvelopeFormatError(DicomCryptError):
    """The envelope is malformed or truncated (detected before any decryption)."""


class DecryptionError(DicomCryptError):
    """Authentication failed: the key is wrong or the data was altered.

    Deliberately one message for every cause, in the spirit of Fernet's InvalidToken, so an
    attacker cannot learn which check failed.
    """

    MESSAGE = "decryption failed: wrong key, or the data or its bound attributes were altered"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.MESSAGE)


class KeyNotFoundError(DicomCryptError):
    """No available key matches the key id the envelope needs."""

    def __init__(self, needed: list[str] | str, available: list[str] | tuple[str, ...] = ()) -> None:
        needed_list = [needed] if isinstance(needed, str) else list(needed)
        self.needed = needed_list
        self.available = list(available)
        have = ", ".join(self.available) if self.available else "none"
        super().__init__(f"no key for key id {' or '.join(needed_list)} (keys loaded: {have})")


class KeyFileError(DicomCryptError):
    """A key file is missing, malformed or has the wrong size."""


class RecipientFormatError(InvalidInputError):
    """A public recipient string is malformed (prefix, length, alphabet, checksum) or unusable."""


class KeyRingError(KeyFileError):
    """A keyring file (TOML) is malformed or lists something that is not a key."""


class ModelError(DicomCryptError):
    """A model is unknown, or its weights fail their SHA-256 check."""


class ModelMismatchError(ModelError):
    """The envelope names a model other than the one available to decode it."""


class TrainingError(DicomCryptError):
    """Training cannot start or resume (no images, a checkpoint of another run, an init the
    architecture does not offer)."""


class IntegrityError(DicomCryptError):
    """Restored pixels differ from the digest stored at encryption time."""


class OutputExistsError(DicomCryptError):
    """The output path exists and overwriting was not requested."""


class OutputWriteError(DicomCryptError):
    """An output file could not be written (disk full, read-only, permission): says which and why.

    Built with :meth:`for_path`, which finds the operating system's reason even under pydicom's
    re-raised copy of the error (that copy has the traceback text in its message and no errno).
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    @classmethod
    def for_path(cls, path: object, exc: BaseException) -> OutputWriteError:
        cause: BaseException | None = exc
        while cause is not None and not (isinstance(cause, OSError) and cause.strerror):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, OSError) and cause.strerror:
            reason = cause.strerror[:1].lower() + cause.strerror[1:]
            return cls(f"cannot write {path}: {reason}", cause.errno)
        return cls(f"cannot write {path}: {type(exc).__name__}")


class ManifestError(DicomCryptError):
    """A batch's job manifest (OUT/.dicomcrypt-manifest.sqlite) is missing, unreadable or unwritable."""


class JobMismatchError(ManifestError):
    """OUT holds the manifest of another job (other operation, settings or IN): resuming would mix two jobs."""


class PayloadFormatError(DicomCryptError):
    """The decrypted payload (or a part of it, like the latent) is malformed."""


class IdentityProtectionError(DicomCryptError):
    """The identifying attributes could not be protected or restored (PS3.15 Annex E)."""


class IdentityFormatError(IdentityProtectionError):
    """An Encrypted Attributes Sequence, its CMS object or its decrypted content is malformed."""


class IdentityKeyError(IdentityProtectionError):
    """No identity key given opens the Encrypted Attributes Sequence (names its recipients)."""


class ConfigError(InvalidInputError):
    """The config file is missing, is not valid TOML, or has an unknown or invalid setting."""


class TLSConfigError(InvalidInputError):
    """A certificate, key or CA file is missing or unusable."""


class PeerAddressError(InvalidInputError):
    """A peer address is not ``AET@host:port``, or one of its parts is invalid."""


class ReceiverConfigError(InvalidInputError):
    """The receiver's settings contradict each other or are incomplete."""


class PlaintextRefusedError(InvalidInputError):
    """Plain images were given with nobody to encrypt for and without permission to send them plain."""


class AssociationError(DicomCryptError):
    """The peer could not be reached, refused the association, or the TLS handshake failed."""


class NoAcceptedContextError(DicomCryptError):
    """The peer accepted no presentation context that can carry an instance (its SOP class, or
    its transfer syntax and no uncompressed one to decompress it to)."""


class ForwardError(DicomCryptError):
    """Forwarding to the downstream peer failed; the upstream sender should retry."""


class ForwardUnreachableError(ForwardError):
    """No association with the downstream peer (refused, rejected, timed out, aborted)."""


class ForwardRefusedError(ForwardError):
    """The downstream peer answered the C-STORE with a failure status."""

    def __init__(self, peer_ae_title: str, status: int) -> None:
        self.status = status
        super().__init__(f"{peer_ae_title} answered 0x{status:04X}")


class ForwardQueueError(DicomCryptError):
    """The gateway's forward queue (SPOOL/.dicomcrypt-forward) cannot be created, read or written."""


class DuplicateConflictError(DicomCryptError):
    """The SOP Instance UID is already filed with different content (policy ``keep-first``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"SOP Instance UID already filed with other content: {path.name}")


class ClusterError(DicomCryptError):
    """A Dask cluster cannot run the job: unreachable, or a worker lacks the key, IN or a writable OUT."""


class InsecureClusterError(ClusterError):
    """The job would send secrets in clear over plain TCP (use workers' key files, TLS or ``local:N``)."""
