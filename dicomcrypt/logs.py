"""Where log lines go and how they look, for every command: set up in one place.

A service's logs are read by people at 3 a.m. and by log shippers, so each line carries a UTC
timestamp with its zone (``2026-12-03T16:20:04.123Z``), the level and the logger, as text or as
one JSON object per line (``--log-format json``). They go to stderr, or to a file
(``--log-file``) through :class:`logging.handlers.WatchedFileHandler`: when logrotate moves the
file away, the next line opens a new one, and :meth:`LogSetup.reopen` (``serve`` calls it on
SIGHUP) does it at once. Python warnings (pydicom's, ours) become log lines too, so a user sees
each once, in the same format. Messages are escaped by :mod:`dicomcrypt.logsafe` (a peer cannot
forge a line); what is logged never holds key bytes or patient data (callers log key ids and UIDs).

Standard library only.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dicomcrypt.errors import ConfigError
from dicomcrypt.logsafe import SafeFormatter, escape

__all__ = ["FORMATS", "JsonFormatter", "LogSetup", "TextFormatter", "configure", "level_for"]

FORMATS = ("text", "json")
_OURS = ("dicomcrypt", "pynetdicom", "py.warnings")
"""The loggers routed to our handler: ours, pynetdicom's (from warnings up) and Python warnings."""


def _utc_timestamp(created: float) -> str:
    """``2026-12-03T16:20:04.123Z``: ISO 8601, UTC, milliseconds, the zone written out."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class TextFormatter(SafeFormatter):
    """``2026-12-03T16:20:04.123Z INFO dicomcrypt.serve event=store ...`` (``timestamps=False``:
    ``dicomcrypt: warning: ...``, the short form an interactive command shows on a terminal)."""

    def __init__(self, *, timestamps: bool = True) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s" if timestamps
                         else "%(program)s: %(levelname)s: %(message)s")
        self.timestamps = timestamps

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _utc_timestamp(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        if not self.timestamps:  # the library that speaks: dicomcrypt, or pynetdicom (with -v)
            record.levelname = record.levelname.lower()
            record.program = "pynetdicom" if record.name.startswith("pynetdicom") else "dicomcrypt"
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message`` and, for our
    ``key=value`` lines, the pairs as ``fields`` (so a log shipper needs no parser of its own).
    ASCII-only JSON: every control character of a peer's value is escaped."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, Any] = {
            "time": _utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": escape(message),
        }
        fields = _pairs(message)
        if fields:
            entry["fields"] = fields
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True)


def _pairs(message: str) -> dict[str, str]:
    """The ``key=value`` words of a message (values quoted as ``scp._fields`` quotes them)."""
    if "=" not in message:
        return {}
    try:
        words = shlex.split(message)
    except ValueError:  # unbalanced quotes: keep the message as text only
        return {}
    return dict(word.split("=", 1) for word in words if "=" in word and not word.startswith("="))


def _warning_first_line(record: logging.LogRecord) -> bool:
    """A captured Python warning as one line (``file:line: Category: message``, without the
    source line :func:`warnings.formatwarning` appends)."""
    if record.name == "py.warnings":
        record.msg, record.args = record.getMessage().strip().splitlines()[0], ()
    return True


class LogSetup:
    """The handler installed by :func:`configure`; :meth:`reopen` and :meth:`restore` act on it."""

    def __init__(self, handler: logging.Handler, saved: list[tuple[logging.Logger, list[logging.Handler], int, bool]],
                 captured: bool) -> None:
        self.handler = handler
        self._saved = saved
        self._captured = captured

    @property
    def path(self) -> Path | None:
        """The log file, or None when logging to stderr."""
        if isinstance(self.handler, logging.handlers.WatchedFileHandler):
            return Path(self.handler.baseFilename)
        return None

    def reopen(self) -> None:
        """Close and open the log file again (after logrotate moved it); a no-op on stderr."""
        handler = self.handler
        if not isinstance(handler, logging.handlers.WatchedFileHandler):
            return
        handler.acquire()
        try:
            if handler.stream is not None:
                handler.stream.flush()
                handler.stream.close()
            handler.stream = handler._open()
            handler._statstream()
        finally:
            handler.release()

    def restore(self) -> None:
        """Put the previous logging set-up back (tests run commands in-process) and close the file."""
        for logger, handlers, level, propagate in self._saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        logging.captureWarnings(self._captured)
        self.handler.close()


def level_for(verbosity: int | None, default: str = "warning") -> int:
    """The level of our loggers: ``default``, one step more with ``-v`` (1), one less with ``-q`` (-1)."""
    steps = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR]
    base = steps.index(logging.getLevelName(default.upper()))
    return steps[max(0, min(len(steps) - 1, base - (verbosity or 0)))]


def configure(*, level: int | str = logging.WARNING, fmt: str = "text", file: str | Path | None = None,
              timestamps: bool = True, library_level: int = logging.WARNING) -> LogSetup:
    """Send ``dicomcrypt``'s log lines (at ``level``), pynetdicom's (at ``library_level``) and
    Python warnings to stderr or ``file``, as ``fmt``. Raises ConfigError when ``file`` cannot be
    opened for appending (checked now, so a service fails at start, not at its first line)."""
    if fmt not in FORMATS:
        raise ConfigError(f"log format {fmt!r} is unknown (choose {', '.join(FORMATS)})")
    handler: logging.Handler
    if file is not None:
        try:
            handler = logging.handlers.WatchedFileHandler(file, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"log file {file}: cannot open for appending ({exc.strerror or exc})") from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(timestamps=timestamps or file is not None))
    handler.addFilter(_warning_first_line)
    levels: Sequence[int | str] = (level, library_level, logging.WARNING)
    saved = []
    for name, logger_level in zip(_OURS, levels, strict=True):
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.level, logger.propagate))
        logger.handlers[:] = [handler]
        logger.setLevel(logger_level)
        logger.propagate = False
    captured = _warnings_captured()
    logging.captureWarnings(True)
    return LogSetup(handler, saved, captured)


def _warnings_captured() -> bool:
    """Whether :func:`logging.captureWarnings` is on (logging keeps it in a private global)."""
    return getattr(logging, "_warnings_showwarning", None) is not None
