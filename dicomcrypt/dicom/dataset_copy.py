"""An independent copy of a data set, made for a fraction of ``copy.deepcopy``'s cost.

Why: every pipeline call starts from a copy of its input (the input is never modified), and
``copy.deepcopy`` of a pydicom Dataset rebuilds every element, raw or not, through pickle's
reduce protocol: 31 % of the Orthanc hook's time per CT instance (issue 14). Most of that work
copies things that cannot change. This copy shares what is immutable (undecoded
``RawDataElement`` tuples, bytes, str, int, float, None, tags, UID/DS/IS values) and rebuilds
every container (Dataset, DataElement, Sequence, MultiValue) so that no later edit of the copy, including
pydicom's in-place ``ds.X = v``, reaches the original. Anything else (PersonName, DSfloat, dates,
numpy arrays, the file buffer) is deep-copied as before, so the result writes the same bytes as
``copy.deepcopy``'s, element for element. One difference, on purpose: the copy's private block
cache points at the copy (see :func:`_copy_dataset`).
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, PrivateBlock
from pydicom.multival import ConstrainedList
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import IS, DSfloat, ISfloat

__all__ = ["independent_copy", "independent_element_copy"]

D = TypeVar("D", bound=Dataset)

# Exact types only: a subclass may carry mutable state of its own. UID, DS and IS are str, float
# and int subclasses whose extra attributes (the original string, the validation mode) are set
# once when pydicom builds them and never changed: values, shared like the builtins. PersonName
# (cached components) and the date/time types are deep-copied.
_SHARED: frozenset[type] = frozenset(
    {bytes, str, int, float, bool, type(None), BaseTag, RawDataElement, UID, DSfloat, IS, ISfloat}
)


def independent_copy(ds: D) -> D:
    """A copy of ``ds`` (and of its file meta, sequences and items) that shares nothing mutable."""
    return _copy_dataset(ds, {})


def independent_element_copy(elem: DataElement) -> DataElement:
    """A copy of one element (its sequence items too) that shares nothing mutable."""
    copied: DataElement = _copy_object(elem, {})
    return copied


def _copy(value: Any, memo: dict[int, Any]) -> Any:
    """One value: shared when immutable, rebuilt when a pydicom container, else deep-copied."""
    if type(value) in _SHARED:
        return value
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, Dataset):
        return _copy_dataset(value, memo)
    if isinstance(value, DataElement):
        return _copy_object(value, memo)
    if isinstance(value, ConstrainedList):  # Sequence, MultiValue
        return _copy_object(value, memo)
    return copy.deepcopy(value, memo)


def _copy_dataset(ds: D, memo: dict[int, Any]) -> D:
    """A Dataset or FileDataset, its attributes in the same order as ``copy.deepcopy`` gives.

    The private block cache is rebuilt to point at the copy: pydicom 3.0's
    ``PrivateBlock.__deepcopy__`` keeps the original data set, so ``copy.deepcopy(ds)
    .private_block(...).add_new(...)`` writes into ``ds`` (tests/test_receive.py works around it).
    """
    result = ds.__class__.__new__(ds.__class__)
    memo[id(ds)] = result
    for name, value in ds.__dict__.items():
        if name == "_dict":
            value = {tag: _copy(elem, memo) for tag, elem in value.items()}
        elif name == "_private_blocks":
            value = {key: PrivateBlock(key, result, block.block_start >> 8) for key, block in value.items()}
        elif name == "buffer":
            value = _copy_buffer(value, memo)
        else:
            value = _copy(value, memo)
        object.__setattr__(result, name, value)
    return result


def _copy_object(obj: Any, memo: dict[int, Any]) -> Any:
    """An element or a list container: a new object whose attributes are copied by :func:`_copy`
    (a ConstrainedList keeps its items in ``_list``)."""
    result = obj.__class__.__new__(obj.__class__)
    memo[id(obj)] = result
    for name, value in obj.__dict__.items():
        if name == "_list":
            value = [_copy(item, memo) for item in value]
        else:
            value = _copy(value, memo)
        object.__setattr__(result, name, value)
    return result


def _copy_buffer(buffer: Any, memo: dict[int, Any]) -> Any:
    """The buffer a FileDataset was read from: copied, or None when it cannot be (closed), as
    pydicom's own ``FileDataset.__deepcopy__`` does (it warns; a working copy need not)."""
    try:
        return copy.deepcopy(buffer, memo)
    except Exception:  # a closed or unpicklable stream: pydicom sets None too
        return None
