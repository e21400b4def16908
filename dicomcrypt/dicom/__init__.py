"""The DICOM layer: pixels <-> arrays, attribute snapshot, placeholder, private block, UID rules.

pydicom and numpy only (no torch, no cryptography). Contract: ``docs/architecture.md``.
"""

from dicomcrypt.dicom.attributes import (
    OVERLAY_GROUPS,
    SNAPSHOT_TAGS,
    restore_attributes,
    snapshot_attributes,
)
from dicomcrypt.dicom.dataset_copy import independent_copy
from dicomcrypt.dicom.derived import check_uid_root, derived_instance_uid, mark_lossy_derived
from dicomcrypt.dicom.encoding import convert_to_little_endian, transfer_syntax
from dicomcrypt.dicom.identity import uids
from dicomcrypt.dicom.pixels import (
    PixelFormat,
    has_pixel_data,
    pixel_keyword,
    read_frames,
    write_frames,
)
from dicomcrypt.dicom.placeholder import apply_placeholder, placeholder_mask, placeholder_size
from dicomcrypt.dicom.private_block import (
    PRIVATE_CREATOR,
    PRIVATE_GROUP,
    PrivateInfo,
    read_private_block,
    remove_private_block,
    write_private_block,
)

__all__ = [
    "OVERLAY_GROUPS",
    "PRIVATE_CREATOR",
    "PRIVATE_GROUP",
    "SNAPSHOT_TAGS",
    "PixelFormat",
    "PrivateInfo",
    "apply_placeholder",
    "convert_to_little_endian",
    "has_pixel_data",
    "independent_copy",
    "mark_lossy_derived",
    "check_uid_root",
    "derived_instance_uid",
    "pixel_keyword",
    "placeholder_mask",
    "placeholder_size",
    "read_frames",
    "read_private_block",
    "remove_private_block",
    "restore_attributes",
    "snapshot_attributes",
    "transfer_syntax",
    "uids",
    "write_frames",
    "write_private_block",
]
