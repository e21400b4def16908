"""Parse only the elements the pipeline works on; copy every other element's bytes unchanged.

A storage hook pays for every element pydicom touches: parsing, decoding, copying and writing a
data set are Python work per element, and a CT slice carries a few hundred elements of which
restoring or encrypting reads and writes a few dozen. Measured on CT_small (258 elements) that
per-element work was three quarters of the hook's time. So, for an instance received little
endian and undeflated (Explicit or Implicit VR, native or encapsulated pixels)::

    Part 10 bytes ──scan element boundaries──> [(tag, begin, end), ...]    (no value decoded)
        ├─ the worked-on elements, with the File Meta Information ──> a small Part 10 object
        │      ──> the usual pipeline (receive / encrypt_instance) ──> its Part 10 bytes
        └─ every other element: its bytes as received, merged back in tag order
           (re-encoded when the result's VR encoding is not the received one)

:func:`is_worked_on` says what restoring and encrypting (the modes a hook runs without identity
protection or a lossy derivation) read, change, add or delete: the Image Pixel module and the rest
of group 0028 (pixel description, VOI, palettes, rescale), :data:`~dicomcrypt.dicom.attributes.
SNAPSHOT_TAGS` and the overlay groups, the private group our block lives in, Pixel Data, the UIDs
the envelope is bound to, the character set and the Encrypted Attributes Sequence.

The caller decides when this applies (:class:`Spliced` answers None for anything it cannot split:
not Part 10, another transfer syntax, a malformed element) and then runs the whole data set
through the usual path instead, so every refusal comes from the usual code with its usual error.
Other elements are not decoded: one pydicom could not decode is stored as received (the PACS
parsed the instance before calling the hook) rather than refused.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR
from pydicom.uid import UID

from dicomcrypt.dicom.attributes import OVERLAY_GROUPS, SNAPSHOT_TAGS
from dicomcrypt.dicom.private_block import PRIVATE_GROUP

__all__ = ["Spliced", "is_worked_on"]

_WORKED_ON_GROUPS = frozenset({0x0028, PRIVATE_GROUP, 0x7FE0, *OVERLAY_GROUPS})
_WORKED_ON_TAGS = frozenset({
    0x00080005,  # Specific Character Set: how the strings among them are encoded
    0x00080016, 0x00080018, 0x0020000D, 0x0020000E,  # the UIDs the envelope is bound to
    0x04000500,  # Encrypted Attributes Sequence: restore notes an identity it does not restore
    *SNAPSHOT_TAGS,  # what the placeholder changes (0088,0200 Icon Image Sequence is outside group 0028)
})

_PREAMBLE = 128
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_TAG_LENGTH = struct.Struct("<HHL")
_TAG_VR_SHORT = struct.Struct("<HH2sH")


def is_worked_on(tag: int) -> bool:
    """True for an element a hook's restore or encrypt reads, changes, adds or deletes."""
    return (tag >> 16) in _WORKED_ON_GROUPS or tag in _WORKED_ON_TAGS


class _Malformed(Exception):
    """The bytes do not split cleanly; the caller takes the usual path (which names the fault)."""


@dataclass(frozen=True)
class Spliced:
    """One instance split into the elements the pipeline works on and the rest, by byte range."""

    data: bytes
    body_start: int
    """Offset of the first data set element (after the File Meta Information)."""
    elements: tuple[tuple[int, int, int], ...]
    """(tag, begin, end) of every top-level data set element, in tag order."""
    implicit: bool = False
    """Received Implicit VR Little Endian (else Explicit VR Little Endian)."""

    @classmethod
    def of(cls, data: bytes) -> Spliced | None:
        """The split of ``data``, or None: not Part 10 with a little endian, undeflated data set
        (Explicit or Implicit VR, native or encapsulated pixels), or malformed."""
        try:
            body = _little_endian_body(data)
            if body is None:
                return None
            body_start, implicit = body
            return cls(data, body_start, tuple(_top_level(data, body_start, implicit=implicit)), implicit)
        except (_Malformed, struct.error, IndexError):
            return None

    def worked_on(self) -> bytes:
        """Part 10 bytes holding the File Meta Information and only the worked-on elements."""
        data = self.data
        return b"".join([data[: self.body_start], *(data[b:e] for tag, b, e in self.elements if is_worked_on(tag))])

    def merge(self, result: bytes) -> bytes | None:
        """``result`` (the pipeline's Part 10 bytes for :meth:`worked_on`) with every other element
        put back as received; None when ``result``'s data set is neither Explicit nor Implicit VR
        Little Endian (undeflated).

        The result's elements win; worked-on elements absent from it were deleted by the pipeline.
        When the result's VR encoding is not the received one the others are re-encoded, same
        values: into Implicit VR (a restored original that was Implicit VR, :func:`_as_implicit`)
        or Explicit VR (an Implicit VR instance encrypted, :func:`_as_explicit`). Group lengths (gggg,0000) of
        data set groups are dropped, as pydicom drops them when it writes: they are retired, and a
        group we change would make them false.
        """
        try:
            body = _little_endian_body(result)
            if body is None:
                return None
            out_start, implicit = body
            produced = [(tag, result[b:e]) for tag, b, e in _top_level(result, out_start, implicit=implicit)]
            written = {tag for tag, _ in produced}
            convert = None if implicit == self.implicit else _as_implicit if implicit else _as_explicit
            kept = [
                (tag, convert(self.data, b, e) if convert else self.data[b:e])
                for tag, b, e in self.elements
                if not is_worked_on(tag) and tag not in written and tag & 0xFFFF
            ]
        except (_Malformed, struct.error, IndexError):
            return None
        merged = sorted([*produced, *kept], key=lambda item: item[0])
        return b"".join([result[:out_start], *(chunk for _, chunk in merged)])


def _little_endian_body(data: bytes) -> tuple[int, bool] | None:
    """(offset of the data set, whether it is Implicit VR) of Part 10 bytes whose data set is little
    endian and undeflated; None for any other transfer syntax."""
    body_start, syntax = _file_meta(data)
    encoding = _little_endian_vr(syntax)
    return None if encoding is None else (body_start, encoding == "implicit")


def _little_endian_vr(syntax: bytes) -> str | None:
    """"explicit" or "implicit" for a little endian, undeflated transfer syntax (native or
    encapsulated pixels); None for the others and for UIDs pydicom does not know as one."""
    try:
        uid = UID(syntax.decode("ascii"))
        if not uid.is_little_endian or uid.is_deflated:
            return None
        return "implicit" if uid.is_implicit_VR else "explicit"
    except ValueError:  # not a transfer syntax pydicom knows (a private one): take the usual path
        return None


def _file_meta(data: bytes) -> tuple[int, bytes]:
    """(offset after the File Meta Information, Transfer Syntax UID without padding)."""
    if len(data) < _PREAMBLE + 4 or data[_PREAMBLE:_PREAMBLE + 4] != b"DICM":
        raise _Malformed("no DICM prefix")
    pos, syntax = _PREAMBLE + 4, b""
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x02\x00":  # group 0002, little endian
        end = _element_end(data, pos, implicit=False)
        if data[pos + 2:pos + 4] == b"\x10\x00":  # (0002,0010) Transfer Syntax UID
            syntax = data[pos + 8:end].rstrip(b"\x00 ")
        pos = end
    return pos, syntax


def _top_level(data: bytes, pos: int, *, implicit: bool) -> list[tuple[int, int, int]]:
    found: list[tuple[int, int, int]] = []
    previous = -1
    while pos < len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        tag = group << 16 | element
        if tag <= previous:
            raise _Malformed("elements out of order")
        end = _element_end(data, pos, implicit=implicit)
        found.append((tag, pos, end))
        previous, pos = tag, end
    return found


def _element_end(data: bytes, pos: int, *, implicit: bool) -> int:
    """Offset just after the element (or item) starting at ``pos``."""
    group, element, length = _TAG_LENGTH.unpack_from(data, pos)
    if group == 0xFFFE or implicit:
        header, vr = 8, b"SQ"
    else:
        _, _, vr, short = _TAG_VR_SHORT.unpack_from(data, pos)
        if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):  # not a VR: pydicom's reader would guess
            raise _Malformed("not an explicit VR")
        if vr in _LONG_VRS:
            header, length = 12, struct.unpack_from("<L", data, pos + 8)[0]
        else:
            header, length = 8, short
    if length == _UNDEFINED:
        # an undefined length is a sequence (or encapsulated pixel data); UN holds implicit VR
        return _items_end(data, pos + header, implicit=implicit or vr == b"UN")
    end = pos + header + length
    if end > len(data):
        raise _Malformed("element runs past the end")
    return end


def _items_end(data: bytes, pos: int, *, implicit: bool) -> int:
    """Offset after the Sequence Delimitation Item closing the items starting at ``pos``."""
    while True:
        group, element, length = _TAG_LENGTH.unpack_from(data, pos)
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            return pos + 8
        if tag != _ITEM:
            raise _Malformed("expected an item")
        pos += 8
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # an item of undefined length: elements up to the Item Delimitation Item
            group, element, _ = _TAG_LENGTH.unpack_from(data, pos)
            if group << 16 | element == _ITEM_END:
                pos += 8
                break
            pos = _element_end(data, pos, implicit=implicit)


def _as_implicit(data: bytes, begin: int, end: int) -> bytes:
    """The Explicit VR element at ``begin`` encoded Implicit VR Little Endian: the same value bytes
    under an 8-byte header; a sequence's items are converted too, written with undefined lengths
    (their explicit lengths no longer hold). UN of undefined length is implicit inside already."""
    group, element, vr, short = _TAG_VR_SHORT.unpack_from(data, begin)
    if vr not in _LONG_VRS:
        return struct.pack("<HHL", group, element, short) + data[begin + 8:end]
    length = struct.unpack_from("<L", data, begin + 8)[0]
    if vr != b"SQ":
        return struct.pack("<HHL", group, element, length) + data[begin + 12:end]
    items_end = end - 8 if length == _UNDEFINED else end  # before the Sequence Delimitation Item
    header = struct.pack("<HHL", group, element, _UNDEFINED)
    return header + _items_converted(data, begin + 12, items_end, implicit=False, convert=_as_implicit)


def _items_converted(data: bytes, pos: int, items_end: int, *, implicit: bool,
                     convert: Callable[[bytes, int, int], bytes]) -> bytes:
    """A sequence's items from ``pos`` to ``items_end``, each element re-encoded by ``convert``,
    written with undefined lengths (the items' explicit lengths no longer hold), then the
    Sequence Delimitation Item."""
    parts = []
    while pos < items_end:
        item_group, item_element, item_length = _TAG_LENGTH.unpack_from(data, pos)
        if item_group << 16 | item_element != _ITEM:
            raise _Malformed("expected an item")
        pos += 8
        stop = _items_content_end(data, pos, implicit=implicit) if item_length == _UNDEFINED else pos + item_length
        parts.append(struct.pack("<HHL", 0xFFFE, 0xE000, _UNDEFINED))
        while pos < stop:
            element_end = _element_end(data, pos, implicit=implicit)
            parts.append(convert(data, pos, element_end))
            pos = element_end
        parts.append(struct.pack("<HHL", 0xFFFE, 0xE00D, 0))
        pos = stop + 8 if item_length == _UNDEFINED else stop
    parts.append(struct.pack("<HHL", 0xFFFE, 0xE0DD, 0))
    return b"".join(parts)


def _items_content_end(data: bytes, pos: int, *, implicit: bool = False) -> int:
    """Offset of the Item Delimitation Item closing the item content at ``pos``."""
    while True:
        group, element, _ = _TAG_LENGTH.unpack_from(data, pos)
        if group << 16 | element == _ITEM_END:
            return pos
        pos = _element_end(data, pos, implicit=implicit)


def _as_explicit(data: bytes, begin: int, end: int) -> bytes:
    """The Implicit VR element at ``begin`` encoded Explicit VR Little Endian, its VR from the
    data dictionary: a private creator is LO, another private element or an unknown tag UN (its
    value bytes as they are), a sequence's items converted too (undefined lengths). A VR the
    dictionary leaves ambiguous ("US or SS", "OB or OW") stops the split: pydicom resolves those
    from other attributes, the whole-data-set path does it."""
    group, element, length = _TAG_LENGTH.unpack_from(data, begin)
    vr = _dictionary_vr(group, element)
    if vr == "SQ" or (length == _UNDEFINED and vr == "UN"):
        items_end = end - 8 if length == _UNDEFINED else end
        header = struct.pack("<HH2sHL", group, element, b"SQ", 0, _UNDEFINED)
        return header + _items_converted(data, begin + 8, items_end, implicit=True, convert=_as_explicit)
    if length == _UNDEFINED:
        raise _Malformed("undefined length outside a sequence")
    encoded = vr.encode("ascii")
    if encoded not in _LONG_VRS and length > 0xFFFF:
        encoded = b"UN"  # too long for a 2-byte length: as pydicom writes it
    if encoded in _LONG_VRS:
        return struct.pack("<HH2sHL", group, element, encoded, 0, length) + data[begin + 8:end]
    return struct.pack("<HH2sH", group, element, encoded, length) + data[begin + 8:end]


def _dictionary_vr(group: int, element: int) -> str:
    if group & 1:
        return "LO" if 0x0010 <= element <= 0x00FF else "UN"
    try:
        vr = dictionary_VR(group << 16 | element)
    except KeyError:
        return "UN"
    if len(vr) != 2:
        raise _Malformed("ambiguous VR")
    return vr
