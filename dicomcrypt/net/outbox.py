"""What ``send`` will send: each file's identity and treatment, decided before any connection.

Every input file gets one treatment:

- ``encrypt``: a plain image and a key or recipient was given; encrypted on the fly, sent as Explicit VR
  Little Endian;
- ``already encrypted``: carries a dicomcrypt block; sent as it is;
- ``not an image``: no Pixel Data (SR, RT Plan, ...); sent as it is, reported as passed through
  (with identity protection it is ``encrypt``ed instead: its identity must not leave in clear);
- ``plain``: a plain image sent unencrypted, only when the caller asked for it (``--plain``).

A plain image with no key, no recipient and no explicit permission stops the whole send before it connects
(:class:`PlaintextRefusedError`): a hospital must not leak pixels by mistake.

Encryption on the fly runs in worker processes (the codec is CPU-bound and torch keeps the GIL
for part of the work), prepared as the batch runner's are (:mod:`dicomcrypt.runner.worker`: one
thread each, Ctrl-C left to the parent); each receives the :class:`EncryptionSettings` once.
Each worker writes the sealed instance as a Part 10 file into the send's private spool folder
(:func:`make_spool`: RAM-backed where the system has one, mode 0700, removed when the send
ends) and returns only its path: the parent never parses it, pynetdicom streams the file's
data set to the wire as it is (issue 14: it used to be encoded, decoded and encoded again).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pydicom
from pydicom.dataset import Dataset

from dicomcrypt.errors import DicomCryptError, PlaintextRefusedError
from dicomcrypt.runner.worker import spawn_pool
from dicomcrypt.settings import EncryptionSettings

Treatment = Literal["encrypt", "already encrypted", "not an image", "plain"]


@dataclass(frozen=True)
class Outgoing:
    """One instance to send: where it is, what it is, and how it will travel."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    modality: str
    transfer_syntax: str  # as it will be proposed (for ``encrypt``: the placeholder's, placeholder_transfer_syntax)
    treatment: Treatment
    streamable: bool = False
    """The file can go to the wire unparsed (Part 10, its File Meta names this SOP Class and
    Instance): true of every sealed file; of an input only when its own meta agrees."""


@dataclass(frozen=True)
class Unsendable:
    """An input that cannot be sent at all (not DICOM, no SOP Instance UID, damaged envelope)."""

    path: str
    error: str


@dataclass(frozen=True)
class Sealed:
    """What a worker returns: where the encrypted instance's Part 10 file is, or why it failed."""

    path: str = ""
    size: int = 0
    mode: str | None = None
    note: str = ""
    seconds: float = 0.0
    envelope_bytes: int = 0
    error: str | None = None


# --------------------------------------------------------------------------- planning


def expand(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Every file below ``paths`` (files or folders, walked like ``encrypt`` walks IN).

    DICOMDIR files are left out: their records describe a file set, not instances to store.
    """
    from dicomcrypt.files import iter_dicom_inputs

    for root in paths:
        for path, _ in iter_dicom_inputs(root):
            if path.name.upper() != "DICOMDIR":
                yield path


def describe(path: Path, settings: EncryptionSettings | None) -> Outgoing | Unsendable:
    """Read ``path``'s header (large values deferred) and decide its treatment for ``settings``
    (None: nobody to encrypt for)."""
    from dicomcrypt.dicom import has_pixel_data
    from dicomcrypt.dicom.placeholder import placeholder_transfer_syntax
    from dicomcrypt.files import read_dicom
    from dicomcrypt.pipeline import inspect_dataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds: Dataset | None = pydicom.dcmread(path, defer_size=4096)
    except Exception:  # pydicom raises many types on damaged files
        ds = None
    if ds is None or len(ds) == 0:
        try:
            read_dicom(path)  # raises with the project's message for this file
        except DicomCryptError as exc:
            return Unsendable(str(path), _strip(str(exc), path))
        return Unsendable(str(path), "damaged DICOM file, cannot parse it")
    meta = getattr(ds, "file_meta", None)
    missing = [kw for kw in ("SOPClassUID", "SOPInstanceUID") if not ds.get(kw)]
    if missing or meta is None or not meta.get("TransferSyntaxUID"):
        what = ", ".join(missing) or "(0002,0010) Transfer Syntax UID"
        return Unsendable(str(path), f"cannot be stored: no {what}")
    try:
        encrypted = inspect_dataset(ds).encrypted
    except DicomCryptError as exc:
        return Unsendable(str(path), f"damaged dicomcrypt block: {exc}")
    if encrypted:
        treatment: Treatment = "already encrypted"
    elif not has_pixel_data(ds):
        treatment = "encrypt" if settings is not None and settings.identity is not None else "not an image"
    else:
        treatment = "encrypt" if settings is not None else "plain"
    tsyntax = (
        placeholder_transfer_syntax(ds.get("NumberOfFrames")) if treatment == "encrypt" else str(meta.TransferSyntaxUID)
    )
    streamable = (
        treatment != "encrypt"
        and str(meta.get("MediaStorageSOPClassUID", "")) == str(ds.SOPClassUID)
        and str(meta.get("MediaStorageSOPInstanceUID", "")) == str(ds.SOPInstanceUID)
        and ds.preamble is not None
    )
    return Outgoing(
        path=str(path),
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        modality=str(ds.get("Modality", "")),
        transfer_syntax=str(tsyntax),
        treatment=treatment,
        streamable=streamable,
    )


def plan(
    paths: Iterable[str | os.PathLike[str]], settings: EncryptionSettings | None, *, allow_plain: bool
) -> tuple[list[Outgoing], list[Unsendable]]:
    """Describe every input file; refuse plain images unless there are ``settings`` (someone to
    encrypt for) or ``allow_plain``.

    Raises :class:`InvalidInputError` for a path that does not exist and
    :class:`PlaintextRefusedError` (naming the first such file) for unprotected images.
    """
    items: list[Outgoing] = []
    unsendable: list[Unsendable] = []
    for path in expand(paths):
        described = describe(path, settings)
        if isinstance(described, Outgoing):
            items.append(described)
        else:
            unsendable.append(described)
    plain = [item for item in items if item.treatment == "plain"]
    if plain and not allow_plain:
        raise PlaintextRefusedError(
            f"{len(plain)} plain (unencrypted) image(s), first {plain[0].path}: refusing to send "
            "pixels in clear; give a key or recipient to encrypt them on the fly, or allow plain sending explicitly"
        )
    return items, unsendable


def _strip(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


# --------------------------------------------------------------------------- sealing


_SETTINGS: EncryptionSettings | None = None
_SPOOL: str = ""


def make_spool() -> str:
    """A private folder (0700) for one send's sealed files: in RAM (``/dev/shm``) where the
    system has it, so sealed instances never touch a disk, else the temporary folder."""
    shm = Path("/dev/shm")
    where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="dicomcrypt-send-", dir=where)


def remove_spool(spool: str) -> None:
    shutil.rmtree(spool, ignore_errors=True)


def _start_sealer(settings: EncryptionSettings, spool: str) -> None:
    """Pool initializer: the settings arrive once per process (keys pickle as their bytes, so
    each worker rebuilds the X25519 public keys once, not per file)."""
    global _SETTINGS, _SPOOL
    _SETTINGS, _SPOOL = settings, spool


def seal_file(path: str, settings: EncryptionSettings, spool: str) -> Sealed:
    """Read and encrypt one file, and write it as a Part 10 file into ``spool``. Never raises:
    errors come back in ``Sealed.error``."""
    from dicomcrypt.files import dicom_to_bytes, read_dicom
    from dicomcrypt.pipeline import encrypt_instance

    started = time.perf_counter()
    try:
        outcome = encrypt_instance(read_dicom(path), settings)
        data = dicom_to_bytes(outcome.dataset)
        fd, sealed_path = tempfile.mkstemp(suffix=".dcm", dir=spool)
        with os.fdopen(fd, "wb") as handle:  # a spool file, read once by this send: no fsync
            handle.write(data)
    except DicomCryptError as exc:
        return Sealed(error=_strip(str(exc), Path(path)), seconds=time.perf_counter() - started)
    except Exception as exc:  # a bug or an unforeseen input: report it, keep sending
        return Sealed(error=f"internal error: {type(exc).__name__}: {exc}", seconds=time.perf_counter() - started)
    return Sealed(sealed_path, len(data), outcome.mode, outcome.note or "", time.perf_counter() - started,
                  int(outcome.metrics.get("envelope_bytes", 0)))


def _seal_in_worker(path: str) -> Sealed:
    assert _SETTINGS is not None, "worker not initialised"
    return seal_file(path, _SETTINGS, _SPOOL)


class Sealer:
    """Encrypts files ahead of the sender: ``submit(path) -> Future[Sealed]``.

    ``workers > 1``: a spawned process pool (:func:`dicomcrypt.runner.worker.spawn_pool`).
    ``workers == 1``: one thread in this process, which still overlaps encryption with sending.
    Not the runner's :class:`~dicomcrypt.runner.pool.LocalPool`: the sender needs one future per
    file, submitted as its queue has room and awaited in sending order, and a sealed file in its
    own spool (removed by :meth:`close`), not a file written to OUT.
    """

    def __init__(self, settings: EncryptionSettings, workers: int) -> None:
        self.settings = settings
        self.workers = max(1, workers)
        self.spool = make_spool()
        self._pool: Executor | None = None

    def submit(self, path: str) -> Future[Sealed]:
        if self._pool is None:
            if self.workers == 1:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="dicomcrypt-seal")
            else:
                self._pool = spawn_pool(self.workers, _start_sealer, (self.settings, self.spool))
        if isinstance(self._pool, ThreadPoolExecutor):
            return self._pool.submit(seal_file, path, self.settings, self.spool)
        return self._pool.submit(_seal_in_worker, path)

    def close(self, *, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None
        remove_spool(self.spool)
