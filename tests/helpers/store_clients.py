"""Clients that send to a receiver under test: DCMTK ``storescu`` and a bare pynetdicom SCU.

The pynetdicom client is deliberately not our ``send`` (``dicomcrypt.net.scu``): receiver tests
must see exactly the bytes and statuses on the wire, including wrong ones.
"""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE

from helpers.dciodvfy import require_tool


def dcmtk_env() -> dict[str, str]:
    """The current environment plus ``TCP_NODELAY=1`` (DCMTK 3.6.7 stalls on Nagle otherwise)."""
    return {**os.environ, "TCP_NODELAY": "1"}


def storescu(
    port: int,
    files: Sequence[Path],
    *,
    syntax: str = "-xe",
    calling: str = "SENDER",
    called: str = "RECEIVER",
    tls: Sequence[str] = (),
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run DCMTK ``storescu`` (verbose) to 127.0.0.1:``port``; ``tls`` holds its TLS options."""
    exe = require_tool("storescu")
    argv = [exe, "-v", "-aet", calling, "-aec", called, syntax, *tls, "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=dcmtk_env())


def associate(
    port: int,
    contexts: Sequence[tuple[str, Sequence[str]]],
    *,
    calling: str = "SENDER",
    called: str = "RECEIVER",
    ssl_context: ssl.SSLContext | None = None,
):
    """An established pynetdicom association (the caller releases it)."""
    ae = AE(ae_title=calling)
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, list(syntaxes))
    tls_args = (ssl_context, None) if ssl_context is not None else None
    return ae.associate("127.0.0.1", port, ae_title=called, tls_args=tls_args)


def store(port: int, ds: Dataset | Path, **kwargs) -> Dataset:
    """C-STORE one data set (or a Part 10 file, sent as its bytes) and return the response status
    data set (empty if there was none). The association is released afterwards."""
    if isinstance(ds, Path):
        meta = pydicom.dcmread(ds, stop_before_pixels=True).file_meta
        sop_class, syntax = meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID
    else:
        sop_class, syntax = ds.SOPClassUID, ds.file_meta.TransferSyntaxUID
    assoc = associate(port, [(sop_class, [syntax])], **kwargs)
    assert assoc.is_established, "association was not accepted"
    try:
        return assoc.send_c_store(ds)
    finally:
        assoc.release()


def good_files(out: Path) -> list[Path]:
    """Instances a receiver filed among good data under ``out`` (everything outside quarantine)."""
    return sorted(p for p in out.rglob("*.dcm") if "quarantine" not in p.relative_to(out).parts)
