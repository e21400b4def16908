"""Encrypt, restore and compare a folder: the demo and the acceptance check in one.

Every instance goes through the real file path (encrypt, write DICOM bytes, read them back,
decrypt, write, read) so the report measures what a user would get, then the restored pixels
are compared with the original ones: exact for lossless and standard, PSNR/SSIM for lossy.
Each lossy row also says what JPEG 2000 needs for the same PSNR on the same pixels
(:func:`jpeg2000_same_psnr`), so the report shows whether the learned codec earns its place.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from dicomcrypt import dicom, quality
from dicomcrypt.crypto import Key
from dicomcrypt.errors import DicomCryptError, UnsupportedImageError
from dicomcrypt.evaluation import anchors
from dicomcrypt.files import dicom_to_bytes, iter_dicom_inputs
from dicomcrypt.pipeline import decrypt_instance, encrypt_instance


@dataclass(frozen=True)
class RoundTripRow:
    """One file in one requested mode."""

    path: str
    requested: str
    modality: str = ""
    geometry: str = ""
    mode: str | None = None
    action: str = ""
    note: str = ""
    original_bytes: int = 0
    encrypted_bytes: int = 0
    payload_bytes: int = 0
    encrypt_s: float = 0.0
    restore_s: float = 0.0
    quality: quality.Quality | None = None
    error: str | None = None
    jpeg2000_bytes: int | None = None  # lossy rows: the smallest JPEG 2000 stream reaching the same PSNR

    @property
    def ok(self) -> bool:
        """Exact modes must restore every pixel; lossy must at least restore."""
        if self.error is not None:
            return False
        if self.quality is None or self.mode == "lossy":
            return True
        return self.quality.exact


def run(root: Path, *, key: Key, modes: Iterable[str] = ("lossless", "lossy")) -> Iterator[RoundTripRow]:
    """Round-trip every file below ``root`` in each mode, yielding a row as each finishes."""
    for path, relative in iter_dicom_inputs(root):
        for mode in modes:
            yield _one(path, str(relative), mode, key)


def _one(path: Path, name: str, mode: str, key: Key) -> RoundTripRow:
    try:
        original = pydicom.dcmread(path)
    except Exception:  # pydicom raises many types for non-DICOM input
        return RoundTripRow(name, mode, action="skipped", note="not a DICOM file")
    base: dict[str, Any] = {
        "path": name,
        "requested": mode,
        "modality": str(original.get("Modality", "")),
        "original_bytes": path.stat().st_size,
    }
    try:
        started = time.perf_counter()
        sealed = encrypt_instance(original, key=key, mode=mode)
        sealed_bytes = dicom_to_bytes(sealed.dataset)
        encrypt_s = time.perf_counter() - started
        if sealed.action == "passed through":
            return RoundTripRow(action=sealed.action, note=sealed.note, encrypted_bytes=len(sealed_bytes), **base)
        started = time.perf_counter()
        restored = decrypt_instance(pydicom.dcmread(io.BytesIO(sealed_bytes)), keys=[key])
        restored_ds = pydicom.dcmread(io.BytesIO(dicom_to_bytes(restored.dataset)))
        restore_s = time.perf_counter() - started
        before, fmt = dicom.read_frames(original)
        after, _ = dicom.read_frames(restored_ds)
        compared = quality.compare(before, after, rescale=ct_rescale(original))
        return RoundTripRow(
            geometry=f"{fmt.columns}x{fmt.rows}x{fmt.frames}x{fmt.samples_per_pixel}",
            mode=sealed.mode,
            action="restored",
            note=sealed.note,
            encrypted_bytes=len(sealed_bytes),
            payload_bytes=int(sealed.metrics.get("payload_bytes", 0)),
            encrypt_s=encrypt_s,
            restore_s=restore_s,
            quality=compared,
            jpeg2000_bytes=jpeg2000_same_psnr(before, compared) if sealed.mode == "lossy" else None,
            **base,
        )
    except DicomCryptError as exc:
        return RoundTripRow(error=f"{type(exc).__name__}: {exc}", **base)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
        # pydicom's reader and writer raise these for files that break the standard (an Implicit VR
        # data set under an Explicit VR transfer syntax, SC_rgb_jpeg.dcm): one file must not stop the report
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return RoundTripRow(error=f"pydicom cannot process it ({type(exc).__name__}: {first_line})", **base)


def ct_rescale(ds: Dataset) -> tuple[float, float] | None:
    """(slope, intercept) for a CT, which turns on the brain-window figure of quality.compare."""
    if ds.get("Modality") != "CT":
        return None
    return float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))


def jpeg2000_same_psnr(original: np.ndarray, restored: quality.Quality) -> int | None:
    """Bytes of the smallest JPEG 2000 stream (OpenJPEG, every frame) whose decoded pixels reach the
    PSNR ``restored`` has; None when the anchor cannot code these pixels (e.g. 16-bit colour)."""
    if restored.exact:
        return None
    try:
        return anchors.smallest_reaching(anchors.prepare(original), anchors.JPEG2000, restored.psnr_db).nbytes
    except UnsupportedImageError:
        return None


def format_row(row: RoundTripRow) -> str:
    """One line of the report table."""
    if row.error:
        result = f"FAILED {row.error}"
    elif row.quality is None:
        result = row.note or row.action
    elif row.quality.exact:
        result = "exact"
    else:
        q = row.quality
        result = f"PSNR {q.psnr_db:5.1f} dB  SSIM {q.ssim:.4f}"
        if q.window_mae_hu is not None:
            result += f"  brain-window MAE {q.window_mae_hu:.1f} HU"
        if row.jpeg2000_bytes:
            result += (f"  JPEG 2000 same PSNR {row.jpeg2000_bytes / 1e3:.1f} kB"
                       f" (ours {row.payload_bytes / row.jpeg2000_bytes:.1f}x)")
    if row.note and row.quality is not None:
        result += f"  ({row.note})"
    return (
        f"{row.path:<40} {row.modality:<4} {row.geometry:<16} {row.requested:<8} {row.mode or '-':<9}"
        f" {row.original_bytes / 1e3:>8.1f} {row.encrypted_bytes / 1e3:>9.1f} {row.payload_bytes / 1e3:>8.1f}"
        f" {row.encrypt_s:>6.2f} {row.restore_s:>6.2f}  {result}"
    )


HEADER = (
    f"{'file':<40} {'mod':<4} {'WxHxFxC':<16} {'asked':<8} {'used':<9}"
    f" {'orig kB':>8} {'encr. kB':>9} {'payl kB':>8} {'enc s':>6} {'rest s':>6}  result"
)
