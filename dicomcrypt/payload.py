"""The plaintext that an envelope encrypts: JSON metadata plus named binary sections.

The metadata says how to rebuild the pixels (mode, model, pixel format, normalisation, digest
of the original pixels); the sections hold the bytes (quantised latent, residual, standard-coded
pixels, the snapshot of the attributes the placeholder replaced). Everything here is inside the
AES-GCM ciphertext, so it is authenticated before it is parsed; the checks below catch bugs and
version skew, not attackers.

Layout (integers big-endian)::

    4 bytes  magic b"DCP1"
    u32      length of the metadata, then the metadata (UTF-8 JSON object)
    u8       number of sections; per section: u8 name length, ASCII name, u64 length, bytes
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

from dicomcrypt.errors import PayloadFormatError

MAGIC = b"DCP1"
SECTIONS = frozenset({"latent", "residual", "pixels", "attributes", "padding"})

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


@dataclass
class Payload:
    """Metadata and sections of one encrypted instance."""

    meta: dict[str, Any]
    sections: dict[str, bytes] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        unknown = set(self.sections) - SECTIONS
        if unknown:
            raise ValueError(f"unknown payload sections: {sorted(unknown)}")
        meta = json.dumps(self.meta, sort_keys=True, separators=(",", ":")).encode()
        parts = [MAGIC, _U32.pack(len(meta)), meta, bytes([len(self.sections)])]
        for name, data in sorted(self.sections.items()):
            parts += [bytes([len(name)]), name.encode("ascii"), _U64.pack(len(data)), data]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, blob: bytes) -> "Payload":
        reader = _Reader(blob)
        if reader.take(4) != MAGIC:
            raise PayloadFormatError("payload: bad magic (not a dicomcrypt payload v1)")
        meta_bytes = reader.take(reader.unpack(_U32))
        try:
            meta = json.loads(meta_bytes)
        except ValueError as exc:
            raise PayloadFormatError("payload: metadata is not JSON") from exc
        if not isinstance(meta, dict):
            raise PayloadFormatError("payload: metadata is not a JSON object")
        sections: dict[str, bytes] = {}
        for _ in range(reader.take(1)[0]):
            name = reader.take(reader.take(1)[0]).decode("ascii", "replace")
            if name not in SECTIONS or name in sections:
                raise PayloadFormatError(f"payload: unexpected section {name!r}")
            sections[name] = reader.take(reader.unpack(_U64))
        if not reader.at_end():
            raise PayloadFormatError("payload: trailing bytes")
        return cls(meta, sections)

    def section(self, name: str) -> bytes:
        try:
            return self.sections[name]
        except KeyError:
            raise PayloadFormatError(f"payload: section {name!r} is missing") from None


class _Reader:
    def __init__(self, blob: bytes) -> None:
        self._view = memoryview(blob)
        self._offset = 0

    def take(self, length: int) -> bytes:
        end = self._offset + length
        if end > len(self._view):
            raise PayloadFormatError("payload: truncated")
        chunk = bytes(self._view[self._offset : end])
        self._offset = end
        return chunk

    def unpack(self, fmt: struct.Struct) -> int:
        return fmt.unpack(self.take(fmt.size))[0]

    def at_end(self) -> bool:
        return self._offset == len(self._view)
