"""Write a 224x224 RGB DICOM cut from pydicom-data's US1_UNCR: the paper's Table 3 image size.

The paper times 224x224x3 images; no held-out DICOM file has that size, so ``dicomcrypt bench``
measures this centre crop of the held-out colour ultrasound (never trained on) for the direct
comparison in docs/benchmarks.md:

    python scripts/make_paper_size_sample.py /tmp/paper224/US1_crop224.dcm
    dicomcrypt bench /tmp/paper224 --repeat 5
"""

from __future__ import annotations

import sys
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

SIZE = 224


def main(out: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("US1_UNCR.dcm"))
    pixels = ds.pixel_array
    top, left = (pixels.shape[0] - SIZE) // 2, (pixels.shape[1] - SIZE) // 2
    ds.set_pixel_data(pixels[top : top + SIZE, left : left + SIZE].copy(), "RGB", 8)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "US1_crop224.dcm"))
