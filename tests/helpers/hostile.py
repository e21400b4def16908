"""Payloads sealed by a stranger: whoever knows a node's public recipient string seals what they like.

:func:`sealed_by_stranger` encrypts a test image for a public recipient only (no secret is
needed) with a doctored attribute snapshot, as a modified dicomcrypt would write it.
"""

from __future__ import annotations

import io
import json
import struct

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from dicomcrypt import dicom, pipeline
from dicomcrypt.crypto import RecipientKey
from dicomcrypt.dicom import attributes
from dicomcrypt.pipeline import encrypt_instance
from helpers.corpus import fresh_copy

FOREIGN = {"SOPInstanceUID": "1.2.3.4.5.6.7", "StudyInstanceUID": "1.2.3.4.5.6.8",
           "SeriesInstanceUID": "1.2.3.4.5.6.9", "PatientName": "Mallory^Eve"}
"""What a stranger would like the restored instance to be."""


def snapshot_with(ds: Dataset, extra: dict[str, str], *, listed: bool) -> bytes:
    """A real snapshot of ``ds`` plus ``extra`` attributes; ``listed``: named in its header too."""
    blob = attributes.snapshot_attributes(ds)
    start = len(attributes.MAGIC) + 4
    (size,) = struct.unpack_from("<I", blob, len(attributes.MAGIC))
    header = json.loads(blob[start:start + size])
    snap = read_dataset(io.BytesIO(blob[start + size:]), is_implicit_VR=False, is_little_endian=True)
    extra_ds = Dataset()
    for keyword, value in extra.items():
        setattr(extra_ds, keyword, value)
    for elem in extra_ds:
        snap.add(elem)
        if listed:
            header["tags"].append(f"{int(elem.tag):08X}")
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, snap)
    head = json.dumps(header).encode()
    return attributes.MAGIC + struct.pack("<I", len(head)) + head + fp.getvalue()


def sealed_by_stranger(node_key: RecipientKey, monkeypatch, extra: dict[str, str], *, listed: bool,
                       name: str = "CT_small.dcm") -> Dataset:
    """CT_small encrypted for the node's public recipient string only, its snapshot doctored."""
    real = dicom.snapshot_attributes
    monkeypatch.setattr(pipeline.dicom, "snapshot_attributes", lambda ds: snapshot_with(ds, extra, listed=listed))
    try:
        return encrypt_instance(fresh_copy(name), recipients=[str(node_key.recipient)],
                                mode="standard").dataset
    finally:
        monkeypatch.setattr(pipeline.dicom, "snapshot_attributes", real)
