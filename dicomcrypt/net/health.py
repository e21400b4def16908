"""Is the receiving node ready to take instances? The checks behind ``/healthz``.

Ready means an instance arriving now would be answered success and end up where it should:
the keys to restore it are loaded, the models to decode it are installed, the output (and spool)
folders are writable with room for the largest instance, and the downstream peer answered the
last time it was tried. Each check is cheap (no model load, no network), so a load balancer may
poll every few seconds. A failing check names its cause; it never carries key material.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicomcrypt.net.forward import QueueDrain
    from dicomcrypt.net.scp import ReceiverConfig

__all__ = ["check_health"]

_MIB = 1024 * 1024


def check_health(config: ReceiverConfig, drain: QueueDrain | None) -> dict[str, Any]:
    """``{"ready": bool, "checks": {name: {"ok": bool, "detail": str}}}``."""
    checks = {
        "keys": _keys(config),
        "models": _models(config),
        "output": _folders(config),
        "downstream": _downstream(drain),
    }
    return {"ready": all(check["ok"] for check in checks.values()), "checks": checks}


def _check(ok: bool, detail: str) -> dict[str, Any]:
    return {"ok": ok, "detail": detail}


def _keys(config: ReceiverConfig) -> dict[str, Any]:
    count = len(config.keys.key_ids) if config.keys is not None else 0
    if config.store == "encrypted":
        return _check(True, f"{count} key(s); not needed to keep instances encrypted")
    return _check(count > 0, f"{count} key(s) loaded")


def _models(config: ReceiverConfig) -> dict[str, Any]:
    if config.store == "encrypted":
        return _check(True, "not needed to keep instances encrypted")
    from dicomcrypt.codec.registry import DEFAULT_CODECS, DEFAULT_MODELS, available_models

    # what senders use by default (the wavelet codec) and what older envelopes name (the autoencoders)
    missing = sorted((set(DEFAULT_CODECS.values()) | set(DEFAULT_MODELS.values())) - set(available_models()))
    if missing:
        return _check(False, f"default model(s) not installed: {', '.join(missing)}")
    return _check(True, f"{len(available_models())} model(s) installed")


def _folders(config: ReceiverConfig) -> dict[str, Any]:
    folders = [folder for folder in (config.out, config.spool) if folder is not None]
    for folder in dict.fromkeys(folders):
        problem = _unwritable(folder, need=config.max_instance_mb * _MIB)
        if problem:
            return _check(False, f"{folder}: {problem}")
    return _check(True, ", ".join(str(folder) for folder in dict.fromkeys(folders)) or "forward only")


def _unwritable(folder: Path, *, need: int) -> str:
    probe = folder
    while not probe.exists() and probe != probe.parent:  # created on first write: judge the parent
        probe = probe.parent
    if not probe.is_dir():
        return "not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return "not writable"
    free = shutil.disk_usage(probe).free
    if free < need:
        return f"only {free // _MIB} MiB free, less than one largest instance ({need // _MIB} MiB)"
    return ""


def _downstream(drain: QueueDrain | None) -> dict[str, Any]:
    if drain is None:
        return _check(True, "no --forward")
    if drain.downstream_ok is None:
        return _check(True, f"{drain.forwarder.peer}: not contacted yet")
    if drain.downstream_ok:
        return _check(True, f"{drain.forwarder.peer}: answered the last attempt")
    return _check(False, drain.last_error)  # names the peer
