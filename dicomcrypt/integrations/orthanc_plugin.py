"""The dicomcrypt storage hook inside Orthanc (Python plugin 4.0+, Orthanc 1.10+).

Orthanc's "PythonScript" (written by ``dicomcrypt orthanc-script``) imports this module and calls
:func:`install`, which reads the "DicomCrypt" section of Orthanc's configuration, builds one
:class:`~dicomcrypt.integrations.hooks.StorageHook` for the process (keys read and models loaded
once, here) and registers:

- ``RegisterReceivedInstanceCallback``: every instance, whether it came by C-STORE, REST or
  anything else, goes through the hook before Orthanc stores it; a restored or encrypted
  instance replaces the received one (``MODIFY``).
- ``RegisterIncomingCStoreInstanceFilter``: answers the C-STORE failure status of an instance
  the hook refused. Orthanc 1.10 runs the received-instance callback first and then this filter,
  and a ``DISCARD`` from the callback is answered to a C-STORE peer as *success*; so a refused
  C-STORE instance is kept as-is by the callback and refused here, by its bytes' SHA-256. A REST
  upload has no filter: the callback discards it (Orthanc answers ``"Status": "FilteredOut"``).
- ``RegisterRestCallback`` on ``/dicomcrypt/status``: version, mode, key ids, models, counts.

Log lines go to Orthanc's log (``--verbose`` shows one info line per instance with its time).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import sys
import threading
from collections import OrderedDict
from typing import Any

from dicomcrypt.errors import DicomCryptError
from dicomcrypt.integrations.hooks import HOOK_EFFORT, STATUS_CANNOT_UNDERSTAND, StorageHook, failure_status
from dicomcrypt.integrations.orthanc_config import STATUS_ROUTE, parse_settings
from dicomcrypt.logsafe import SafeFormatter

_PENDING_LIMIT = 1024  # refusals awaiting their C-STORE filter call; bounded in case one never comes


class _PendingRefusals:
    """C-STORE refusals decided in the callback, waiting for the filter to answer them.

    Counted per content: the same bad instance sent by two associations at once is refused twice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: OrderedDict[bytes, tuple[int, int]] = OrderedDict()  # sha256 -> (status, count)

    def add(self, data: bytes, status: int) -> None:
        digest = hashlib.sha256(data).digest()
        with self._lock:
            _, count = self._waiting.pop(digest, (status, 0))
            self._waiting[digest] = (status, count + 1)
            while len(self._waiting) > _PENDING_LIMIT:
                self._waiting.popitem(last=False)

    def __bool__(self) -> bool:
        """Any refusal waiting. Read without the lock: an instance's refusal is added by its
        callback, which Orthanc runs to completion before that instance's filter call."""
        return bool(self._waiting)

    def pop(self, data: bytes) -> int:
        """The failure status waiting for this content (0: none, accept)."""
        digest = hashlib.sha256(data).digest()
        with self._lock:
            status, count = self._waiting.pop(digest, (0, 0))
            if count > 1:
                self._waiting[digest] = (status, count - 1)
            return status


class OrthancHook:
    """The three Orthanc callbacks around one :class:`StorageHook`."""

    def __init__(self, orthanc: Any, hook: StorageHook) -> None:
        self.orthanc = orthanc
        self.hook = hook
        self.pending = _PendingRefusals()

    def on_received(self, data: bytes, origin: Any) -> tuple[Any, bytes | None]:
        """Received-instance callback: restore or encrypt, keep, or refuse."""
        actions = self.orthanc.ReceivedInstanceAction
        try:
            result = self.hook.process(data)
        except Exception as exc:  # noqa: BLE001 - any failure must refuse, never store
            status = failure_status(exc) if isinstance(exc, DicomCryptError) else STATUS_CANNOT_UNDERSTAND
            if not isinstance(exc, DicomCryptError):
                self.orthanc.LogError(f"dicomcrypt: unexpected {type(exc).__name__} while processing an instance")
            if origin == self.orthanc.InstanceOrigin.DICOM_PROTOCOL:
                self.pending.add(data, status)
                return actions.KEEP_AS_IS, None
            return actions.DISCARD, None
        if result.changed:
            return actions.MODIFY, result.data
        return actions.KEEP_AS_IS, None

    def on_cstore(self, instance: Any) -> int:
        """Incoming C-STORE filter: 0 accepts; a failure status refuses (the peer sees it).

        With nothing refused waiting, the instance's bytes are neither copied out nor hashed.
        """
        if not self.pending:
            return 0
        return self.pending.pop(instance.GetInstanceData())

    def on_status(self, output: Any, uri: str, **request: Any) -> None:
        if request.get("method") != "GET":
            output.SendMethodNotAllowed("GET")
            return
        output.AnswerBuffer(json.dumps(self.hook.status(), indent=2), "application/json")


class _OrthancLogHandler(logging.Handler):
    """Python logging -> Orthanc's log, so the hook's lines sit beside Orthanc's own."""

    def __init__(self, orthanc: Any) -> None:
        super().__init__()
        self.orthanc = orthanc
        self.setFormatter(SafeFormatter())  # a UID with a newline cannot forge an Orthanc log line

    def emit(self, record: logging.LogRecord) -> None:
        message = f"dicomcrypt: {self.format(record)}"
        if record.levelno >= logging.ERROR:
            self.orthanc.LogError(message)
        elif record.levelno >= logging.WARNING:
            self.orthanc.LogWarning(message)
        else:
            self.orthanc.LogInfo(message)


def load_charls_isolated() -> None:
    """Import pyjpegls so its bundled CharLS binds to itself, not to the CharLS Orthanc loaded.

    Orthanc links DCMTK's ``libdcmtkcharls`` (CharLS 1.x), which exports ``JpegLsEncode`` and
    friends with another ABI; the Python plugin loads extensions after it, so pyjpegls's calls
    resolved to DCMTK's functions and crashed Orthanc (SIGSEGV in ``encode_array``).
    ``RTLD_DEEPBIND`` makes the extension look up its own symbols first. Only this module needs
    it: pylibjpeg's libjpeg and openjpeg export nothing Orthanc's libraries define.
    """
    if "jpeg_ls" in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        return
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        importlib.import_module("jpeg_ls")
    finally:
        sys.setdlopenflags(flags)


def install(orthanc: Any = None) -> OrthancHook:
    """Read the configuration, build the hook and register the callbacks (once per process).

    A bad configuration raises (and is logged): Orthanc must not run without the protection
    the site configured.
    """
    if orthanc is None:
        import orthanc as provided  # provided by Orthanc's Python plugin only

        orthanc = provided
    load_charls_isolated()
    logger = logging.getLogger("dicomcrypt")
    logger.addHandler(_OrthancLogHandler(orthanc))
    logger.setLevel(logging.INFO)
    try:
        settings = parse_settings(json.loads(orthanc.GetConfiguration()))
        hook = StorageHook(
            settings.mode,
            keys=list(settings.key_files),
            encrypt_mode=settings.encrypt_mode,
            model=settings.model,
            encrypt_key_id=settings.encrypt_key_id,
            output_syntax=settings.output_syntax,  # type: ignore[arg-type]  # checked by parse_settings
            uid_root=settings.uid_root,
            effort=settings.encrypt_effort or HOOK_EFFORT,
        )
    except DicomCryptError as exc:
        orthanc.LogError(f"dicomcrypt: not started: {exc}")
        raise
    plugin = OrthancHook(orthanc, hook)
    orthanc.RegisterReceivedInstanceCallback(plugin.on_received)
    orthanc.RegisterIncomingCStoreInstanceFilter(plugin.on_cstore)
    orthanc.RegisterRestCallback(STATUS_ROUTE, plugin.on_status)
    status = hook.status()
    orthanc.LogWarning(
        f"dicomcrypt {status['version']}: {hook.mode} on ingest, key ids {', '.join(status['key_ids'])}, "
        f"models {', '.join(status['models_loaded']) or 'none'}"
    )
    return plugin
