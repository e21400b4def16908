"""Reading, writing and walking DICOM files, so the CLI and the network code share one
careful implementation.

- :func:`read_dicom` turns every parse failure into :class:`NotDicomError` naming the file, so
  a batch can report it and carry on. pydicom converts element values lazily, so the data set
  is decoded whole here (:func:`decode_whole`): a damaged value (a UID that is not ASCII, an
  unknown VR, a length that is not a multiple of the value size) fails on reading, as
  ``NotDicomError``, not later inside the pipeline as pydicom's own exception.
  Strict when writing, tolerant when reading: a *private* element whose value does not decode
  as the VR pydicom's private dictionary gives it (vendors' files carry many; received in
  Implicit VR the reader must guess the VR) is kept as its raw bytes, VR UN, and written back
  unchanged. Only a standard element that does not decode stops an instance.
- :func:`write_dicom_atomic` and :func:`copy_file_atomic` never leave a partial file at the
  destination: they write a hidden temporary file in the target folder, fsync it and rename
  it into place. A crash leaves at worst a hidden ``.NAME.*.tmp`` file, which
  :func:`iter_dicom_inputs` skips.
- :func:`iter_dicom_inputs` decides what a folder holds: every regular, non-hidden file below
  it, in a stable order, with the relative path the output tree mirrors.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag

from dicomcrypt.atomic import write_atomic
from dicomcrypt.errors import InvalidInputError, NotDicomError

__all__ = [
    "read_dicom",
    "read_dicom_bytes",
    "decode_whole",
    "dicom_to_bytes",
    "write_dicom_atomic",
    "copy_file_atomic",
    "write_bytes_atomic",
    "iter_dicom_inputs",
    "is_hidden",
]

_EXPECTED = "expected a DICOM Part 10 file: a 128-byte preamble, 'DICM', then File Meta Information"


def read_dicom(path: str | os.PathLike[str]) -> Dataset:
    """Read a DICOM Part 10 file.

    No ``force``: a file without the preamble and ``DICM`` prefix is refused rather than
    guessed at, because forced parsing "succeeds" on many non-DICOM files.

    Raises :class:`NotDicomError` (not DICOM, or damaged beyond parsing) or
    :class:`InvalidInputError` (cannot be read at all: missing, a folder, no permission).
    """
    path = Path(path)
    return _parse(path, str(path))


def read_dicom_bytes(data: bytes, *, label: str = "instance") -> Dataset:
    """Parse Part 10 bytes (what a PACS hands a storage hook) with :func:`read_dicom`'s rules.

    ``label`` names the input in error messages (an SOP Instance UID, a peer, ...).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInputError(f"{label}: expected DICOM Part 10 bytes, got {type(data).__name__}")
    return _parse(io.BytesIO(data), label)


def dicom_to_bytes(ds: Dataset) -> bytes:
    """The Part 10 bytes of ``ds``, written as :func:`write_dicom_atomic` writes a file."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _parse(source: Path | IO[bytes], label: str) -> Dataset:
    try:
        ds = pydicom.dcmread(source)
    except InvalidDicomError as exc:
        raise NotDicomError(f"{label}: not a DICOM file ({_EXPECTED})") from exc
    except OSError as exc:
        raise InvalidInputError(f"{label}: cannot read: {exc.strerror or exc}") from exc
    except Exception as exc:  # pydicom raises many types on damaged files
        raise NotDicomError(
            f"{label}: damaged DICOM file, cannot parse it ({type(exc).__name__}: {exc}); {_EXPECTED}"
        ) from exc
    if len(ds) == 0:
        # pydicom stops quietly at end of file; a truncated file can parse as an empty data set.
        # Truncation further in is caught where it matters (pixel decoding, a missing Pixel Data).
        raise NotDicomError(f"{label}: damaged DICOM file: no data set after the File Meta Information (truncated?)")
    return decode_whole(ds, label)


def decode_whole(ds: Dataset, label: str = "instance") -> Dataset:
    """Convert every element's value now, so a damaged one raises :class:`NotDicomError` here.

    pydicom reads values lazily and raises its own exceptions (ValueError, NotImplementedError,
    BytesLengthException, ...) wherever a value is first used; callers get one error, early.
    A private element that does not decode is kept as raw bytes instead (:func:`_keep_raw`).
    """
    try:
        _decode_items(ds)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:  # the File Meta Information is a data set of its own
            meta.walk(lambda _ds, _elem: None)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types
        raise NotDicomError(f"{label}: damaged DICOM file, an element does not decode ({_brief(exc)})") from exc
    return ds


def _decode_items(ds: Dataset) -> None:
    """Decode every element of ``ds`` and of its sequence items, tolerating private ones."""
    for tag in list(ds._dict):
        try:
            elem = ds[tag]
        except Exception:  # pydicom raises many types; only a private element may be kept raw
            if not tag.is_private or tag.element < 0x1000:  # private creators name the block
                raise
            _keep_raw(ds, tag)
            continue
        if elem.VR == "SQ":
            for item in elem.value:
                _decode_items(item)


def _keep_raw(ds: Dataset, tag: BaseTag) -> None:
    """Replace the undecodable raw element ``tag`` by a UN element holding its bytes as read."""
    raw = ds._dict[tag]
    if not isinstance(raw, RawDataElement):
        raise TypeError(f"element {tag:08X} failed to decode after conversion")
    value = b"" if raw.value is None else bytes(raw.value)
    ds._dict[tag] = DataElement(raw.tag, "UN", value, is_undefined_length=raw.length == 0xFFFFFFFF)


def _brief(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 200 characters (pydicom's texts can be long)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 200 else text[:197] + "..."


def write_dicom_atomic(ds: Dataset, path: str | os.PathLike[str], *, force: bool = False) -> None:
    """Write ``ds`` as a DICOM Part 10 file at ``path``, all or nothing.

    The File Meta Information is completed and brought in line with the dataset (SOP Class
    and Instance UIDs: a lossy restore gets a new SOP Instance UID) so the output reads back
    with :func:`read_dicom`. Parent folders are created. Raises :class:`OutputExistsError` if
    ``path`` exists and ``force`` is false.
    """

    def write(fh: IO[bytes]) -> None:
        pydicom.dcmwrite(fh, ds, enforce_file_format=True)

    write_atomic(path, write, force=force)


def copy_file_atomic(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, force: bool = False
) -> None:
    """Copy ``src`` to ``dst`` byte for byte, all or nothing (same rules as
    :func:`write_dicom_atomic`).

    Used for instances that pass through: a byte copy is the only way to promise they are
    unchanged, since re-encoding through pydicom may normalise bytes.
    """
    src = Path(src)

    def write(fh: IO[bytes]) -> None:
        with open(src, "rb") as source:
            shutil.copyfileobj(source, fh, length=1 << 20)

    write_atomic(dst, write, force=force)


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str], *, force: bool = False) -> None:
    """Write ``data`` at ``path``, all or nothing (same rules as :func:`write_dicom_atomic`).

    For bytes that must land exactly as they are: an instance kept as received by ``serve``,
    a quarantined payload, its JSON sidecar, Part 10 bytes from a storage hook, reports and figures.
    """

    write_atomic(path, data, force=force)


def is_hidden(name: str) -> bool:
    """Hidden files and folders are skipped: ``.DS_Store``, ``._*`` AppleDouble files,
    ``.git``, and our own interrupted temporary files."""
    return name.startswith(".")


def iter_dicom_inputs(root: str | os.PathLike[str]) -> Iterator[tuple[Path, Path]]:
    """Yield ``(path, relative_path)`` for every input under ``root``.

    - ``root`` a file: yields ``(root, Path(root.name))``, so the output is named like it.
    - ``root`` a folder: every regular file below it, recursively, sorted by relative path,
      so the output tree mirrors the input tree and runs are reproducible. Hidden files and
      hidden folders (name starts with ``.``) are skipped. Symbolic links to files are
      followed; symbolic links to folders are not descended (no loops, no escaping
      ``root``). Non-regular files (sockets, FIFOs, devices) are skipped.

    Files named ``DICOMDIR`` are yielded like any other: deciding what to do with them is the
    caller's business (the CLI skips them and says so, see docs/cli.md).

    Raises :class:`InvalidInputError` if ``root`` does not exist.
    """
    root = Path(root)
    if root.is_file():
        yield root, Path(root.name)
        return
    if not root.is_dir():
        raise InvalidInputError(f"{root}: no such file or folder")
    found: list[tuple[tuple[str, ...], Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not is_hidden(d)]
        for name in filenames:
            if is_hidden(name):
                continue
            path = Path(dirpath, name)
            if path.is_file():  # follows a symlink; False for dangling links, FIFOs, ...
                rel = path.relative_to(root)
                found.append((rel.parts, path))
    for parts, path in sorted(found):
        yield path, Path(*parts)
