"""Context-modelled entropy coding of wavelet bands with constriction's ANS coder.

Every coefficient ``v`` becomes a small *token* (its magnitude class, JPEG-XL's "hybrid
integer"): magnitudes 0..7 are tokens of their own, larger ones are coded by their bit length
and the bit below the leading one; the remaining mantissa bits and the sign travel as *raw bits*
(uniform symbols). Tokens are coded with a categorical model chosen by a context index that the
decoder can compute from what it already has:

- each band is coded in passes; every coefficient sees the parent band (same orientation, one
  level coarser) and the sibling bands of its level coded before it; the even rows and columns
  are coded in three steps whose later steps see decoded neighbours two apart, then the odd
  rows and columns see their four decoded diagonal neighbours, the rest their four direct ones;
- the activity (a weighted sum of those magnitudes) is bucketed on a half-octave scale;
- grey/luma and chroma planes have their own contexts, the low band its own.

All context arithmetic is integer numpy (``frexp`` of an integer is exact), so encoder and
decoder compute the same index on every machine. Symbols of one context (and raw bits of one
width) are coded in one vectorised constriction call; the decoder forms the same groups in the
same order, so a band costs a few dozen calls whatever its size.

Frequency tables are integers. Each context uses either the model's table (learned from training
data, stored in the model file whose SHA-256 the envelope pins) or a table counted on this image
and sent with the stream (quantised to sum about 2**12), whichever costs fewer bits in total; the
choice is recorded per context (:func:`pack_tables`). The decoder so builds the very same models;
constriction quantises the integer weights to its 24-bit fixed point deterministically
(single-threaded Rust on exact float64 integers).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from dicomcrypt.errors import PayloadFormatError

TOKENS = 64  # alphabet of every token model
DIRECT = 8  # magnitudes below this are their own token
CLASSES = 24  # activity classes per (plane kind, pass)
PLANE_KINDS = 2  # grey/luma, chroma
PASSES = 5  # bands.PASSES: three steps of the first pass, then the second and the third
CONTEXTS = PLANE_KINDS * PASSES * CLASSES + PLANE_KINDS  # detail contexts, then one low-band context per kind
TABLE_TOTAL = 1 << 12
MAX_RAW_BITS = 40
_RAW_CHUNK = 16  # raw symbols wider than this are split (constriction's Uniform takes < 2**24)


def tokenise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token, raw value, raw bit count) of each int64 value; raw holds mantissa bits then the sign.

    Magnitudes below :data:`_LOOKUP` (nearly all of them) are looked up in tables that
    :func:`_tokenise_arithmetic` filled, so both give the same numbers."""
    magnitude = np.abs(values)
    if magnitude.size and int(magnitude.max()) >= _LOOKUP:
        return _tokenise_arithmetic(values)
    raw = ((magnitude & _MANTISSA_MASK[magnitude]) << 1) | (values < 0)
    return _TOKEN_OF[magnitude], raw, _BITS_OF[magnitude]


def token_and_bits(magnitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(token, raw bit count) of non-negative magnitudes: :func:`tokenise` without forming the raw bits."""
    if magnitude.size and int(magnitude.max()) >= _LOOKUP:
        tokens, _raw, bits = _tokenise_arithmetic(magnitude)
        return tokens, bits
    return _TOKEN_OF[magnitude], _BITS_OF[magnitude]


def _tokenise_arithmetic(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    magnitude = np.abs(values)
    sign = (values < 0).astype(np.int64)
    exponent = bit_length(magnitude)
    big = magnitude >= DIRECT
    shift = np.where(big, exponent - 2, 0)  # mantissa bits below the leading and the next bit
    tokens = np.where(big, DIRECT + (exponent - 4) * 2 + ((magnitude >> np.maximum(shift, 0)) & 1), magnitude)
    mantissa = np.where(big, magnitude & ((np.int64(1) << shift) - 1), 0)
    nonzero = magnitude > 0
    raw = np.where(nonzero, (mantissa << 1) | sign, 0)
    bits = np.where(nonzero, shift + 1, 0)
    return tokens.astype(np.int32), raw, bits


def raw_bits_of(tokens: np.ndarray) -> np.ndarray:
    """How many raw bits follow each token (what :func:`tokenise` wrote)."""
    return _RAW_BITS_OF_TOKEN[tokens]


def _raw_bits_arithmetic(tokens: np.ndarray) -> np.ndarray:
    tokens = tokens.astype(np.int64)
    big = tokens >= DIRECT
    shift = np.where(big, (tokens - DIRECT) // 2 + 2, 0)
    return np.where(tokens > 0, shift + 1, 0)


def detokenise(tokens: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Inverse of :func:`tokenise` (each token's leading bits from a table :func:`_token_tops` filled)."""
    magnitude = _TOP_OF_TOKEN[tokens] | (raw >> 1)  # a token below DIRECT has no mantissa bits: raw >> 1 is 0
    return np.where(raw & 1 == 1, -magnitude, magnitude)


def _token_tops(tokens: np.ndarray) -> np.ndarray:
    """The magnitude each token stands for before its mantissa bits are added."""
    tokens = tokens.astype(np.int64)
    big = tokens >= DIRECT
    shift = np.where(big, (tokens - DIRECT) // 2 + 2, 0)
    return np.where(big, (2 | ((tokens - DIRECT) & 1)) << shift, tokens)


def bit_length(values: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values below 2**53 (exact: frexp of an integer)."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


def activity_class(activity: np.ndarray) -> np.ndarray:
    """Half-octave bucket of a non-negative activity: 0, 1, 2-3 split in two, ... capped.

    A lookup (:func:`_activity_class_arithmetic` filled it): every activity past the table's
    end is in the last class already."""
    return _CLASS_OF[np.minimum(activity, _CLASS_OF.size - 1)]


def _activity_class_arithmetic(activity: np.ndarray) -> np.ndarray:
    length = bit_length(activity)
    half = np.where(length >= 2, (activity >> np.maximum(length - 2, 0)) & 1, 0)
    return np.minimum(2 * length - (length > 0) + half, CLASSES - 1)


_LOOKUP = 1 << 12
_TOKEN_OF, _, _BITS_OF = _tokenise_arithmetic(np.arange(_LOOKUP, dtype=np.int64))
_MANTISSA_MASK = np.where(np.arange(_LOOKUP) >= DIRECT,
                          (np.int64(1) << np.maximum(bit_length(np.arange(_LOOKUP, dtype=np.int64)) - 2, 0)) - 1, 0)
_RAW_BITS_OF_TOKEN = _raw_bits_arithmetic(np.arange(TOKENS))
_TOP_OF_TOKEN = _token_tops(np.arange(TOKENS))
_CLASS_OF = _activity_class_arithmetic(np.arange(1 << ((CLASSES + 1) // 2), dtype=np.int64))
assert _CLASS_OF[-1] == CLASSES - 1 and _CLASS_OF[-2] == CLASSES - 1  # saturated before the table ends


@dataclass
class Plan:
    """What the ANS stream holds, in decoding order: (kind, model key, symbols) per call."""

    calls: list[tuple[str, int, np.ndarray]] = field(default_factory=list)
    counts: np.ndarray = field(default_factory=lambda: np.zeros((CONTEXTS, TOKENS), dtype=np.int64))


def quantise_counts(row: np.ndarray) -> np.ndarray:
    """Counts -> integer frequencies summing about :data:`TABLE_TOTAL` (every seen token at least 1)."""
    total = int(row.sum())
    return np.where(row > 0, np.maximum(1, (row * TABLE_TOTAL + total // 2) // max(total, 1)), 0).astype(np.int64)


def pack_tables(counts: np.ndarray, model_tables: dict[int, np.ndarray]) -> bytes:
    """Per used context: 0 (the model's table) or 1 and this image's quantised table, whichever is cheaper."""
    out = bytearray()
    used = np.flatnonzero(counts.sum(axis=1))
    out += _varint(len(used))
    for context in used:
        row = counts[context]
        quantised = quantise_counts(row)
        size = int(np.flatnonzero(row)[-1]) + 1
        own = _varint(size) + b"".join(_varint(int(v)) for v in quantised[:size])
        model_row = model_tables.get(int(context))
        # The model's table can code only tokens inside its alphabet (constriction gives every
        # symbol of the alphabet a non-zero probability, none outside it).
        if model_row is not None and size <= model_row.size and (
            _bits(row, model_row) <= _bits(row, quantised[:size]) + 8 * len(own)
        ):
            out += _varint(int(context)) + _varint(0)
        else:
            out += _varint(int(context)) + _varint(1) + own
    return bytes(out)


def unpack_tables(blob: bytes, model_tables: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Inverse of :func:`pack_tables`, every number checked against the alphabet and context count."""
    reader = _VarintReader(blob)
    tables: dict[int, np.ndarray] = {}
    for _ in range(reader.read(CONTEXTS)):
        context = reader.read(CONTEXTS - 1)
        if context in tables:
            raise PayloadFormatError("wavelet stream: a frequency table is repeated")
        if reader.read(1) == 0:
            if context not in model_tables:
                raise PayloadFormatError(f"wavelet stream: context {context} names a table the model does not have")
            tables[context] = np.asarray(model_tables[context], dtype=np.float64)
            continue
        size = reader.read(TOKENS)
        row = np.array([reader.read(TABLE_TOTAL) for _ in range(size)], dtype=np.float64)
        if size == 0 or row.sum() == 0:
            raise PayloadFormatError("wavelet stream: a frequency table is empty")
        tables[context] = row
    if not reader.at_end():
        raise PayloadFormatError("wavelet stream: trailing bytes after the frequency tables")
    return tables


def _bits(counts: np.ndarray, table: np.ndarray) -> float:
    """Encoder's estimate of the bits ``counts`` cost under ``table`` (the choice is recorded, so
    float rounding here cannot make encoder and decoder disagree)."""
    table = np.asarray(table, dtype=np.float64)
    size = max(int(np.flatnonzero(counts)[-1]) + 1, table.size)
    padded = np.zeros(size)
    padded[: table.size] = table
    probability = np.maximum(padded / max(padded.sum(), 1.0), 2.0**-24)
    return float(-(counts[:size] * np.log2(probability[: counts[:size].size])).sum())


def encode_calls(plan: Plan, tables: dict[int, np.ndarray]) -> np.ndarray:
    """ANS-code the plan's calls (in reverse, so the decoder reads them in order); uint32 words."""
    import constriction  # type: ignore[import-untyped]

    coder = constriction.stream.stack.AnsCoder()
    models = _token_models(tables)
    for kind, key, symbols in reversed(plan.calls):
        if symbols.size == 0:
            continue
        if kind == "t":
            coder.encode_reverse(symbols.astype(np.int32), models[key])
        else:
            for chunk_bits, chunk in reversed(_raw_chunks(symbols.astype(np.int64), key)):
                coder.encode_reverse(chunk, constriction.stream.model.Uniform(1 << chunk_bits))
    words: np.ndarray = coder.get_compressed()
    return words


class Decoder:
    """Reads token groups and raw-bit groups from one ANS stream, in the encoder's call order."""

    def __init__(self, words: np.ndarray, tables: dict[int, np.ndarray]) -> None:
        import constriction

        self._constriction = constriction
        try:
            self._coder = constriction.stream.stack.AnsCoder(words)
        except (ValueError, TypeError) as exc:
            raise PayloadFormatError(f"wavelet stream: entropy-coded data is malformed ({exc})") from exc
        self._models = _token_models(tables)

    def tokens(self, context: int, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.int32)
        model = self._models.get(context)
        if model is None:
            raise PayloadFormatError(f"wavelet stream: context {context} is used but has no frequency table")
        return np.asarray(self._coder.decode(model, count), dtype=np.int32)

    def raw(self, bits: int, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        value = np.zeros(count, dtype=np.int64)
        for chunk_bits, shift in _chunk_layout(bits):
            chunk = self._coder.decode(self._constriction.stream.model.Uniform(1 << chunk_bits), count)
            value |= np.asarray(chunk, dtype=np.int64) << shift
        return value

    def finish(self) -> None:
        """The stream must end exactly where the last symbol does (else it was altered)."""
        if not self._coder.is_empty():
            raise PayloadFormatError("wavelet stream: entropy-coded data does not end with the last coefficient")


def _token_models(tables: dict[int, np.ndarray]) -> dict[int, object]:
    import constriction

    return {
        # constriction needs two symbols at least; a zero weight still gets its minimum probability.
        context: constriction.stream.model.Categorical(np.pad(row, (0, max(0, 2 - row.size))), perfect=False)
        for context, row in tables.items()
    }


def _chunk_layout(bits: int) -> list[tuple[int, int]]:
    """(chunk width, shift) in decoding order: the low chunk first."""
    layout = []
    shift = 0
    while shift < bits:
        width = min(_RAW_CHUNK, bits - shift)
        layout.append((width, shift))
        shift += width
    return layout


def _raw_chunks(values: np.ndarray, bits: int) -> list[tuple[int, np.ndarray]]:
    """(width, symbols) per chunk, in decoding order."""
    return [
        (width, ((values >> shift) & ((1 << width) - 1)).astype(np.int32)) for width, shift in _chunk_layout(bits)
    ]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _VarintReader:
    def __init__(self, blob: bytes) -> None:
        self._blob = blob
        self._offset = 0

    def read(self, maximum: int) -> int:
        value = shift = 0
        while True:
            if self._offset >= len(self._blob) or shift > 35:
                raise PayloadFormatError("wavelet stream: frequency tables truncated")
            byte = self._blob[self._offset]
            self._offset += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if value > maximum:
            raise PayloadFormatError(f"wavelet stream: table value {value} exceeds {maximum}")
        return value

    def at_end(self) -> bool:
        return self._offset == len(self._blob)


_U32 = struct.Struct(">I")
