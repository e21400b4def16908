"""A storage hook any PACS can call: DICOM bytes in, the bytes to store out.

A PACS that can run Python before it stores an instance (Orthanc's received-instance
callback, a pynetdicom C-STORE handler, a DICOMweb STOW endpoint) hands the instance to
:meth:`StorageHook.process` and stores what comes back::

    hook = StorageHook("restore", keys=KeyRing.load("/etc/dicomcrypt/keys"))
    result = hook.process(dicom_bytes)      # raises dicomcrypt errors on refusal
    store(result.data)

- ``restore``: :func:`dicomcrypt.receive.receive` decides, as it does for ``dicomcrypt serve``:
  instances encrypted by dicomcrypt are verified, decrypted and reconstructed (stored little
  endian and undeflated); plain instances pass through unchanged (the same bytes).
- ``encrypt``: plain image instances are stored encrypted (at-rest protection) with the first
  key of the ring, or the one named by ``encrypt_key_id``, and any ``recipients``; instances
  that are already encrypted, and non-image objects, pass through unchanged.

A refusal raises the library's own error (:mod:`dicomcrypt.errors`), so a caller maps it to its
platform's answer; :func:`failure_status` gives the DIMSE C-STORE status for DIMSE callers.

Everything a later instance would repeat is paid once, in the constructor: the keys are read,
the receive policy or the encryption settings built and checked, the pipeline imported, and
(``preload=True``) the models the mode may need are loaded through the per-process registry
cache and run once on a tiny image, so the first instance is not slower than the next. A hook
is safe to call from several threads at once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dicomcrypt import status as dimse_status
from dicomcrypt.errors import ConfigError
from dicomcrypt.crypto import Key, KeyRing, Recipient, RecipientKey
from dicomcrypt.errors import DicomCryptError, KeyNotFoundError
from dicomcrypt.logsafe import escape
from dicomcrypt.limits import DEFAULT_LIMITS, DecodeLimits
from dicomcrypt.settings import EncryptionSettings

if TYPE_CHECKING:
    from dicomcrypt.dicom.output_syntax import OutputSyntax
    from dicomcrypt.integrations.splice import Spliced
    from dicomcrypt.receive import Decision, ReceivePolicy

__all__ = [
    "HookCounts",
    "HookResult",
    "StorageHook",
    "failure_status",
    "STATUS_SUCCESS",
    "STATUS_VERIFICATION_FAILED",
    "STATUS_KEY_NOT_FOUND",
    "STATUS_MODEL_UNAVAILABLE",
    "STATUS_CANNOT_UNDERSTAND",
]

logger = logging.getLogger(__name__)

HookMode = Literal["restore", "encrypt"]
HookAction = Literal["decrypted", "encrypted", "passed through"]
HOOK_MODES = ("restore", "encrypt")
ENCRYPT_MODES = ("lossless", "lossy", "standard")
HOOK_EFFORT = "fast"
"""The lossless mode's exact-coding effort a hook encrypts with unless told otherwise. A hook runs
inside the PACS's ingest, one instance at a time (Orthanc: under its one interpreter's lock), so it
takes the effort whose cost is the standard mode's (JPEG-LS and JPEG-XL effort 1; on a 512x512 CT
about 9 ms against 26 ms for ``balanced``, for ~9 % more bytes; never larger than JPEG-LS);
``bench_orthanc.py`` measures both."""

# C-STORE statuses: the library's table (dicomcrypt.status, docs/conformance.md), so an instance
# refused by a PACS hook gets the same code as one refused by `dicomcrypt serve`.
STATUS_SUCCESS = dimse_status.SUCCESS.code
STATUS_CANNOT_UNDERSTAND = dimse_status.CANNOT_UNDERSTAND.code
"""Not DICOM, damaged, or an object the mode cannot handle (0xC004)."""
STATUS_VERIFICATION_FAILED = dimse_status.DECRYPTION_FAILED.code
"""The envelope does not authenticate: wrong key or altered data (0xC001)."""
STATUS_KEY_NOT_FOUND = dimse_status.UNKNOWN_KEY.code
"""No key loaded for the key id the envelope names (0xC002)."""
STATUS_MODEL_UNAVAILABLE = dimse_status.ENVELOPE_DAMAGED.code
"""Damaged envelope or payload, digest mismatch, or a model unknown here (0xC003)."""


def failure_status(error: BaseException) -> int:
    """The C-STORE failure status that answers a refusal by :meth:`StorageHook.process`."""
    return dimse_status.status_for_error(error)[0].code


@dataclass(frozen=True)
class HookResult:
    """What to store for one instance, and what was done to it."""

    data: bytes
    """Part 10 bytes to store: the input object itself when ``action`` is "passed through"."""
    action: HookAction
    mode: str | None
    """The mode actually used ("lossless", "lossy", "standard"); None when passed through."""
    sop_instance_uid: str
    """Of the stored object (a lossy restore is a new, derived instance)."""
    note: str = ""
    seconds: float = 0.0
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """True when ``data`` differs from the input (the PACS must store the new bytes)."""
        return self.action != "passed through"


@dataclass(frozen=True)
class HookCounts:
    """A snapshot of what a hook has done since it was made."""

    decrypted: int = 0
    encrypted: int = 0
    passed_through: int = 0
    refused: int = 0
    seconds: float = 0.0
    """Total time spent in :meth:`StorageHook.process`, refusals included."""

    @property
    def handled(self) -> int:
        """Instances accepted (decrypted, encrypted or passed through)."""
        return self.decrypted + self.encrypted + self.passed_through

    def as_dict(self) -> dict[str, Any]:
        total = self.handled + self.refused
        return {
            "handled": self.handled,
            "decrypted": self.decrypted,
            "encrypted": self.encrypted,
            "passed_through": self.passed_through,
            "refused": self.refused,
            "mean_seconds": round(self.seconds / total, 6) if total else None,
        }


class StorageHook:
    """Restore or encrypt instances on their way into storage (see the module docstring).

    ``keys``: a :class:`KeyRing`, a :class:`Key`, keys, or key file / key folder paths.
    ``encrypt_mode``, ``recipients`` (public recipients, ``Recipient`` objects or ``dcrecip1...``
    strings, encrypted for beside the site key), ``model`` and ``effort`` (the lossless mode's exact-coding
    effort, ``settings.EFFORTS``; :data:`HOOK_EFFORT` unless given) matter in ``encrypt`` mode
    (restoring reads mode and model from the envelope; ``model`` there only chooses what to
    preload). ``limits`` bound what a received payload may make the hook allocate and decode
    (:mod:`dicomcrypt.limits`). ``output_syntax`` and ``uid_root`` (restore): as for ``decrypt``
    (:class:`~dicomcrypt.receive.ReceivePolicy`); without them restored instances stay uncompressed,
    as before. ``splice`` (default): parse and rewrite only the elements restoring or encrypting
    works on and copy the others' bytes (:mod:`dicomcrypt.integrations.splice`); False parses
    every element (the reference the tests compare with). Raises :class:`ConfigError` for a bad
    mode or recipients given to ``restore``,
    :class:`KeyFileError` for unreadable key files, :class:`ModelError` for a bad model, and
    :class:`InvalidInputError` / :class:`RecipientFormatError` for bad recipients.
    """

    def __init__(
        self,
        mode: HookMode = "restore",
        *,
        keys: KeyRing | Key | Iterable[Key] | str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        encrypt_mode: str = "lossless",
        model: str | None = None,
        encrypt_key_id: str | None = None,
        recipients: Iterable[Recipient | str] = (),
        preload: bool = True,
        limits: DecodeLimits = DEFAULT_LIMITS,
        output_syntax: OutputSyntax | None = None,
        uid_root: str | None = None,
        splice: bool = True,
        effort: str = HOOK_EFFORT,
    ) -> None:
        if mode not in HOOK_MODES:
            raise ConfigError(f"storage hook mode {mode!r}: expected one of {', '.join(HOOK_MODES)}")
        if encrypt_mode not in ENCRYPT_MODES:
            raise ConfigError(f"encrypt mode {encrypt_mode!r}: expected one of {', '.join(ENCRYPT_MODES)}")
        self.mode: HookMode = mode
        self.encrypt_mode = encrypt_mode
        self.model = model or None
        self.keys = _key_ring(keys)
        if not len(self.keys):
            raise ConfigError("storage hook: no keys given")
        self.encrypt_key = self._pick_encrypt_key(encrypt_key_id)
        # restore: what every receiver decides (dicomcrypt.receive); a PACS hook keeps plain images.
        # encrypt: one EncryptionSettings, checked here rather than on the first instance.
        # pydicom (and the pixel codecs it loads) is imported here, not when this module is: the
        # Orthanc plugin must load pyjpegls its own way first (orthanc_plugin.load_charls_isolated).
        from dicomcrypt import dicom, files, pipeline, receive
        from dicomcrypt.integrations import splice as splice_module

        self._policy: receive.ReceivePolicy | None = None
        self._settings: EncryptionSettings | None = None
        recipients = list(recipients)
        if mode == "restore":
            if recipients:
                raise ConfigError("storage hook: recipients are for encrypt mode (restoring uses the keys)")
            self._policy = receive.ReceivePolicy(
                store="restored", keys=self.keys, accept_plain=True, limits=limits,
                output_syntax=output_syntax, uid_root=uid_root,
            )
        else:
            if not isinstance(self.encrypt_key, Key):
                raise ConfigError(
                    f"storage hook: key {self.encrypt_key.key_id} is a recipient's private key; encrypt needs "
                    "a site key (public recipients go in recipients=)"
                )
            self._settings = EncryptionSettings.build(
                key=self.encrypt_key, recipients=recipients, mode=encrypt_mode, model=self.model, effort=effort
            )
        self._lock = threading.Lock()
        self._counts = HookCounts()
        self._models: tuple[str, ...] = ()

        self._receive = receive.receive
        self._dicom = dicom
        self._files = files
        self._pipeline = pipeline
        self._splice = splice_module
        self.splice = splice
        if preload:
            self.preload()

    # -- the hook ------------------------------------------------------------------------

    def process(self, data: bytes) -> HookResult:
        """Restore or encrypt one instance; raises a :class:`DicomCryptError` to refuse it.

        The input bytes are never modified. Pass-through returns them unchanged (same object).
        """
        started = time.perf_counter()
        try:
            result = self._process(data, started)
        except DicomCryptError as exc:
            self._count(refused=1, seconds=time.perf_counter() - started)
            logger.warning("refused an instance: %s", escape(exc))
            raise
        except Exception:
            self._count(refused=1, seconds=time.perf_counter() - started)
            raise
        counted = {"decrypted": "decrypted", "encrypted": "encrypted", "passed through": "passed_through"}
        self._count(**{counted[result.action]: 1}, seconds=result.seconds)
        logger.info(
            "%s %s (%s) in %.3f s%s",
            result.action, escape(result.sop_instance_uid), result.mode or "-", result.seconds,
            f": {escape(result.note)}" if result.note else "",
        )
        return result

    def _process(self, data: bytes, started: float) -> HookResult:
        spliced = self._splice.Spliced.of(data) if self.splice else None
        if self._policy is not None:
            return self._restore(data, self._policy, started, spliced)
        return self._encrypt(data, started, spliced)

    def _encrypt(self, data: bytes, started: float, spliced: Spliced | None) -> HookResult:
        if spliced is not None:
            try:
                return self._encrypt_parsed(data, self._files.read_dicom_bytes(spliced.worked_on()), started, spliced)
            except (DicomCryptError, _NoSplice):
                pass  # the whole data set decides, and names any fault, as it always did
        return self._encrypt_parsed(data, self._files.read_dicom_bytes(data), started, None)

    def _encrypt_parsed(self, data: bytes, ds: Any, started: float, spliced: Spliced | None) -> HookResult:
        uid = str(ds.get("SOPInstanceUID", ""))
        if self._dicom.read_private_block(ds) is not None:
            return HookResult(data, "passed through", None, uid, "already encrypted by dicomcrypt",
                              time.perf_counter() - started)
        outcome = self._pipeline.encrypt_instance(ds, self._settings)
        if outcome.action == "passed through":
            return HookResult(data, "passed through", None, uid, outcome.note, time.perf_counter() - started)
        out = self._files.dicom_to_bytes(outcome.dataset)
        if spliced is not None:
            merged = spliced.merge(out)
            if merged is None:
                raise _NoSplice
            out = merged
        return HookResult(
            out, "encrypted", outcome.mode, str(outcome.dataset.get("SOPInstanceUID", "")),
            outcome.note, time.perf_counter() - started, dict(outcome.metrics),
        )

    def _restore(self, data: bytes, policy: ReceivePolicy, started: float, spliced: Spliced | None) -> HookResult:
        """The receiving decision every receiver shares; a refusal raises the library's error."""
        decision = self._restore_spliced(data, policy, spliced) if spliced is not None else None
        if decision is None:
            decision = self._receive(data, policy)
        if decision.error is not None:
            raise decision.error
        uid = str(decision.dataset.get("SOPInstanceUID", "")) if decision.dataset is not None else ""
        action: HookAction = "decrypted" if decision.action == "restored" else "passed through"
        return HookResult(
            decision.data, action, decision.mode, uid, decision.note,
            time.perf_counter() - started, dict(decision.metrics),
        )

    def _restore_spliced(self, data: bytes, policy: ReceivePolicy, spliced: Spliced) -> Decision | None:
        """:func:`receive` on the worked-on elements only; None where the whole data set must decide:
        a refusal (so its error is the usual one), a lossy restore (its derivation marks attributes
        outside them), an output syntax, a result that does not splice."""
        if policy.output_syntax is not None:
            return None
        try:
            ds = self._files.read_dicom_bytes(spliced.worked_on())
            info = self._dicom.read_private_block(ds)
        except DicomCryptError:
            return None
        if info is not None and info.mode == "LOSSY":
            return None
        decision = self._receive(data, policy, dataset=ds)
        if decision.action != "restored":
            return None if decision.refused else decision  # passed through: ``data`` itself
        merged = spliced.merge(decision.data)
        return None if merged is None else dataclasses.replace(decision, data=merged)

    # -- state ---------------------------------------------------------------------------

    @property
    def counts(self) -> HookCounts:
        with self._lock:
            return self._counts

    def status(self) -> dict[str, Any]:
        """What an administrator may see: no key material, no patient data."""
        from dicomcrypt import __version__

        return {
            "version": __version__,
            "mode": self.mode,
            "encrypt_mode": self.encrypt_mode if self.mode == "encrypt" else None,
            "encrypt_key_id": self.encrypt_key.key_id if self.mode == "encrypt" else None,
            "key_ids": list(self.keys.key_ids),
            "models_loaded": list(self._models),
            "counts": self.counts.as_dict(),
        }

    def preload(self) -> None:
        """Load the models this hook may need and run the whole pipeline once on tiny images.

        Models load once per process (the registry caches them). The warm-up round trip, with a
        throwaway key, pays every other first-call cost now instead of on the first instance:
        torch's thread pools and allocations, pixel handler and codec imports.
        """
        from dicomcrypt.codec.registry import load_model

        if self.mode == "encrypt":
            modes = [self.encrypt_mode]
        else:
            modes = ["lossless", "standard"]  # lossless runs every step lossy does
        needs_model = any(m != "standard" for m in modes)
        if needs_model:
            loaded = [load_model(self.model)] if self.model else [load_model(None, channels=c) for c in (1, 3)]
            self._models = tuple(codec.info.model_id for codec in loaded)
            channels = [codec.info.channels for codec in loaded]
        else:
            channels = [1]
        throwaway = Key.generate()
        for samples in channels:
            sample = _warm_up_instance(samples)
            for mode in modes:
                sealed = self._pipeline.encrypt_dataset(sample, key=throwaway, mode=mode, model=self.model)
                restored = self._pipeline.decrypt_dataset(
                    self._files.read_dicom_bytes(self._files.dicom_to_bytes(sealed)), keys=throwaway
                )
                self._files.dicom_to_bytes(restored)

    def _pick_encrypt_key(self, key_id: str | None) -> Key | RecipientKey:
        if key_id is None:
            return next(iter(self.keys))
        key = self.keys.get(key_id)
        if key is None:
            raise KeyNotFoundError(key_id, self.keys.key_ids)
        return key

    def _count(self, *, seconds: float, **increments: int) -> None:
        with self._lock:
            current = self._counts
            values = {name: getattr(current, name) + increments.get(name, 0)
                      for name in ("decrypted", "encrypted", "passed_through", "refused")}
            self._counts = HookCounts(**values, seconds=current.seconds + seconds)


class _NoSplice(Exception):
    """The pipeline's result cannot be spliced back (another transfer syntax): redo it whole."""


def _key_ring(keys: Any) -> KeyRing:
    if isinstance(keys, KeyRing):
        return keys
    if isinstance(keys, Key):
        return KeyRing([keys])
    if isinstance(keys, (str, os.PathLike)):
        return KeyRing.load(keys)
    items = list(keys)
    if items and all(isinstance(item, Key) for item in items):
        return KeyRing(items)
    return KeyRing.load(items)


def _warm_up_instance(samples: int) -> Any:
    """A small synthetic Secondary Capture image: 16-bit grey or 8-bit RGB, a smooth gradient."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    size = 32
    ramp = np.add.outer(np.arange(size), np.arange(size))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = samples
    ds.PixelRepresentation = 0
    if samples == 1:
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        pixels = (ramp * 64).astype(np.uint16)
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        pixels = np.stack([ramp * 4, ramp * 2, 255 - ramp * 4], axis=-1).astype(np.uint8)
    ds.PixelData = pixels.tobytes()
    return ds
