"""docs/conformance.md states what the code does: every status the receiver answers, the TLS
policy and the implementation identification are checked against their sources here."""

from __future__ import annotations

from pathlib import Path

import pynetdicom

from dicomcrypt.net import scp, scu, status, tls
from dicomcrypt.net.contexts import MAX_CONTEXTS, NATIVE
from dicomcrypt.net.scu import CONNECT_TIMEOUT, DEFAULT_TIMEOUT

DOC = (Path(__file__).resolve().parents[2] / "docs" / "conformance.md").read_text()


def test_every_store_status_is_documented():
    for code in status.STORE_STATUSES:
        assert f"| `{code.code:04X}` |" in DOC, f"status {code} missing from docs/conformance.md"


def test_tls_policy_and_identification_as_documented():
    assert tls.MINIMUM_VERSION.name == "TLSv1_2" and "TLS 1.2 and 1.3 only" in DOC
    assert f"`{tls.TLS12_CIPHERS}`" in DOC
    assert f"`{pynetdicom.PYNETDICOM_IMPLEMENTATION_UID}`" in DOC
    assert f"`{pynetdicom.PYNETDICOM_IMPLEMENTATION_VERSION}`" in DOC
    # issue 14: both sides announce 1 MiB, no longer pynetdicom's default 16382 bytes
    assert scu.MAX_PDU_BYTES == scp._RECEIVE_PDU_BYTES == 1024 * 1024
    assert "| max PDU received | 1 MiB announced" in DOC and "| max PDU received | 1 MiB offered" in DOC


def test_association_figures_as_documented():
    assert MAX_CONTEXTS == 128 and "more than 128 presentation contexts" in DOC
    assert [str(uid) for uid in NATIVE] == ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
    assert f"ACSE: {CONNECT_TIMEOUT:.0f} s" in DOC and f"{DEFAULT_TIMEOUT:.0f} s for `send`" in DOC
