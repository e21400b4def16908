"""independent_copy: the same data set copy.deepcopy makes, and nothing the copy's edits reach."""

from __future__ import annotations

import copy
import io

import pydicom
import pytest
from helpers.corpus import read_quietly, sample
from pydicom.sequence import Sequence

from dicomcrypt import dicom
from dicomcrypt.dicom import independent_copy

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")  # the edits below

FILES = [
    "CT_small.dcm",  # raw elements, a private block
    "MR_small_bigendian.dcm",  # big endian
    "SC_rgb_rle_2frame.dcm",  # encapsulated, colour, multi-frame
    "examples_overlay.dcm",  # overlay groups
    "nested_priv_SQ.dcm",  # nested private sequences
    "rtplan.dcm",  # deep sequences, no pixels
    "693_UNCR.dcm",  # the pydicom-data CT the profiles use
]


def to_bytes(ds: pydicom.Dataset) -> bytes:
    """As written by dcmwrite; some corpus files have no file meta to enforce."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


def _both(name: str, decode: bool) -> tuple[pydicom.Dataset, pydicom.Dataset]:
    ds = read_quietly(sample(name))
    if decode:  # a receiver or an earlier step may have converted every element
        for _ in ds.iterall():
            pass
    return ds, copy.deepcopy(ds)


@pytest.mark.parametrize("decode", [False, True], ids=["raw", "decoded"])
@pytest.mark.parametrize("name", FILES)
def test_the_copy_writes_the_bytes_a_deep_copy_writes(name, decode):
    ds, pristine = _both(name, decode)
    copied = independent_copy(ds)
    assert type(copied) is type(ds) and copied.file_meta is not ds.file_meta
    assert list(vars(copied)) == list(vars(ds)) and copied == pristine
    assert to_bytes(copied) == to_bytes(copy.deepcopy(ds)) == to_bytes(ds)


@pytest.mark.parametrize("decode", [False, True], ids=["raw", "decoded"])
@pytest.mark.parametrize("name", FILES)
def test_editing_the_copy_never_reaches_the_original(name, decode):
    ds, pristine = _both(name, decode)
    before = to_bytes(ds)
    copied = independent_copy(ds)
    for elem in list(copied.iterall()):  # in place, as pydicom's ds.X = v does
        if elem.VR == "SQ":
            elem.value.append(pydicom.Dataset())
        elif elem.VR in ("OB", "OW", "UN"):
            elem.value = b"\x00\x00"
        elif isinstance(elem.value, pydicom.multival.MultiValue):
            elem.value.append(elem.value[0] if len(elem.value) else "1")
        elif elem.VR in ("LO", "SH", "CS", "PN", "UI", "LT", "ST", "UT", "DA", "TM", "DS", "IS"):
            elem.value = "1"
    copied.PatientName = "Changed^Only^Here"
    copied.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    copied.add_new(0x00091010, "LO", "new")
    copied.private_block(0x0011, "DICOMCRYPT 1", create=True).add_new(0x10, "OB", b"x")
    dicom.remove_private_block(copied)
    assert ds == pristine and ds.file_meta == pristine.file_meta
    assert to_bytes(ds) == before


def test_the_private_block_cache_points_at_the_copy():
    ds = read_quietly(sample("CT_small.dcm"))
    ds.private_block(0x0043, "GEMS_PARM_01")  # fills the cache of the original
    copied = independent_copy(ds)
    assert copied.private_block(0x0043, "GEMS_PARM_01").dataset is copied
    copied.private_block(0x0043, "GEMS_PARM_01").add_new(0xFE, "LO", "only in the copy")
    assert 0x004310FE not in ds


def test_items_of_a_sequence_are_new_datasets_in_a_new_sequence():
    ds = read_quietly(sample("rtplan.dcm"))
    copied = independent_copy(ds)
    original_items, copied_items = ds.BeamSequence, copied.BeamSequence
    assert isinstance(copied_items, Sequence) and copied_items is not original_items
    assert all(a is not b and a == b for a, b in zip(original_items, copied_items))
