"""Studies built from real files for network tests: shrunk copies with new UIDs.

Real pixels (MR, NM, CR, US from the WG04 set, pydicom's CT), made small so a test does not
spend its time in the codec, and given a common Study Instance UID so they form one study.
The pixels go through the project's own reader/writer (``dicomcrypt.dicom.read_frames`` /
``write_frames``), so a compressed original becomes native Explicit VR Little Endian.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomcrypt.dicom import read_frames, write_frames
from dicomcrypt.files import read_dicom, write_dicom_atomic

__all__ = ["derived_copy", "pixels", "write_study"]


def derived_copy(source: Dataset, *, study_uid: str, shrink: int = 1, series_uid: str | None = None) -> Dataset:
    """``source`` with every ``shrink``-th row and column, new instance (and series) UIDs."""
    frames, fmt = read_frames(source)
    small = np.ascontiguousarray(frames[:, ::shrink, ::shrink, :])
    ds = source.copy()
    write_frames(ds, small, dataclasses.replace(fmt, rows=small.shape[1], columns=small.shape[2]))
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def write_study(folder: Path, sources: dict[Path, int], *, study_uid: str | None = None) -> dict[str, Path]:
    """Write a shrunk copy of each source (``{path: shrink}``) into ``folder`` as one study.

    Returns ``{SOP Instance UID: path written}``.
    """
    study_uid = study_uid or generate_uid()
    written = {}
    for source, shrink in sources.items():
        ds = derived_copy(read_dicom(source), study_uid=study_uid, shrink=shrink)
        path = folder / f"{ds.Modality}-{source.stem}.dcm"
        write_dicom_atomic(ds, path)
        written[str(ds.SOPInstanceUID)] = path
    return written


def pixels(ds: Dataset) -> np.ndarray:
    """All frames as ``(F, H, W, C)``, as the project reads them."""
    return read_frames(ds)[0]
