"""Log lines a peer cannot forge: control characters in logged values are escaped.

UIDs, AE titles, Error Comments, file names and exception messages can come from a peer or a
hostile file. Written to a log as they are, a newline in a UID starts a line that looks like the
receiver's own (``... sop=1.2.3\\n2026-... INFO dicomcrypt.serve event=store outcome=restored``),
and a carriage return or an ANSI escape rewrites what a terminal shows. Every value a peer
controls goes through :func:`escape` before it is logged; :class:`SafeFormatter` applies it to
whole messages (pynetdicom's too) where a program owns the logging set-up (``serve``).

Standard library only.
"""

from __future__ import annotations

import logging

__all__ = ["SafeFormatter", "escape"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BIDI = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
"""Bidirectional overrides: they reorder what a reader sees ("Trojan Source")."""
_CONTROLS = (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *_BIDI)
_TABLE = {code: _NAMED.get(chr(code), f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _CONTROLS}


def escape(value: object) -> str:
    """``str(value)`` on one line: C0/C1 controls, DEL, line and paragraph separators and bidi
    overrides written as ``\\n``, ``\\x1b``, ``\\u2028``; everything else unchanged (so applying
    it twice changes nothing more)."""
    text = str(value)
    return text if text.isprintable() else text.translate(_TABLE)


class SafeFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose message is :func:`escape`\\ d; a traceback attached to
    the record (``logger.exception``) keeps its own lines, it is ours, not the peer's."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape(record.message)
        return super().formatMessage(record)
