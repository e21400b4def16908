"""Real DICOM test files: pydicom's own test files and the pydicom-data package.

Files are found on disk only. Never call ``pydicom.data.get_testdata_files``: for names not
installed it tries to download them (no network here, and slow retries).
"""

from __future__ import annotations

import io
import warnings
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

import pydicom

__all__ = [
    "all_files", "image_files", "pydicom_data_dir", "read_quietly", "sample", "through_bytes", "to_bytes", "fresh_copy",
    "TEST_FILES_DIR",
]

TEST_FILES_DIR = Path(pydicom.__file__).parent / "data" / "test_files"
_NOT_DICOM = {".txt", ".json", ".dump", ".icc", ".gz", ".py"}


@cache
def pydicom_data_dir() -> Path | None:
    """Where the pydicom-data package keeps its files (None if it is not installed)."""
    for ep in entry_points(group="pydicom.data.external_sources"):
        if ep.name == "pydicom-data":
            path = Path(ep.load()().data_path)
            return path if path.is_dir() else None
    return None


@cache
def all_files() -> tuple[Path, ...]:
    """Every candidate DICOM file of both sources, sorted by name."""
    roots = [TEST_FILES_DIR] + ([d] if (d := pydicom_data_dir()) else [])
    found = [
        p
        for root in roots
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() not in _NOT_DICOM and p.name != "README"
    ]
    return tuple(sorted(found, key=lambda p: (p.name, str(p))))


@cache
def image_files() -> tuple[Path, ...]:
    """The files pydicom can parse that hold Pixel Data (or Float/Double Float Pixel Data)."""
    images = []
    for path in all_files():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, force=True)
            except Exception:
                continue
        if any(t in ds._dict for t in (0x7FE00010, 0x7FE00008, 0x7FE00009)):
            images.append(path)
    return tuple(images)


def sample(name: str) -> Path:
    """A test file by name from either source; ``pytest.skip`` if it is not installed."""
    for path in all_files():
        if path.name == name:
            return path
    import pytest

    pytest.skip(f"test file {name} is not installed (pydicom-data missing?)")
    raise AssertionError("unreachable")


def read_quietly(path: Path) -> pydicom.Dataset:
    """Read a test file as pydicom does with force=True, without its warnings about the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def to_bytes(ds: pydicom.Dataset) -> bytes:
    """The Part 10 file bytes of ``ds``, as written to disk."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def through_bytes(ds: pydicom.Dataset) -> pydicom.Dataset:
    """Write and read back ``ds``: what a receiver of the file sees."""
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


def fresh_copy(name: str) -> pydicom.Dataset:
    """A test file under a new SOP Instance UID, so repeated sends are distinct instances."""
    from pydicom.uid import generate_uid

    ds = read_quietly(sample(name))
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds
