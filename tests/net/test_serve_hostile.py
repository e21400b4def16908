"""Hostile peers (issue 12, defects 3-5): sockets that stall, trickle, crowd or flood ``serve``.

Each test uses a real client on loopback, with the receiver's limits scaled down so the test
takes seconds: a silent TCP socket on a TLS port, an A-ASSOCIATE-RQ sent one byte at a time,
many connections from one host, an association kept busy past its ceiling, an instance over
the size limit. Also what the quarantine keeps of a plain image, and its cap and retention.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomcrypt.cli import serve
from dicomcrypt.net.address import parse_peer
from dicomcrypt.net.scp import ReceiverConfig
from dicomcrypt.net.scu import echo
from dicomcrypt.net.storage import Quarantine, header_only
from dicomcrypt.net.tls import client_context, server_context
from helpers.corpus import read_quietly, sample
from helpers.dciodvfy import require_tool
from helpers.store_clients import associate, good_files, store


def _peer(rx) -> str:
    return f"RECEIVER@127.0.0.1:{rx.port}"


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (EOF or reset), or None if it stayed open."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except OSError:
        pass
    return time.monotonic() - started


def _associate_rq(called: str = "RECEIVER", calling: str = "SLOWLORIS") -> bytes:
    """A well-formed A-ASSOCIATE-RQ PDU (Verification, Implicit VR Little Endian)."""
    def item(kind: int, body: bytes) -> bytes:
        return struct.pack(">BBH", kind, 0, len(body)) + body

    context = item(0x20, bytes([1, 0, 0, 0]) + item(0x30, b"1.2.840.10008.1.1") + item(0x40, b"1.2.840.10008.1.2"))
    user = item(0x50, item(0x51, struct.pack(">I", 16382)))
    body = (struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode() + bytes(32)
            + item(0x10, b"1.2.840.10008.3.1.1.1") + context + user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


# -- defect 3: the TLS handshake ------------------------------------------------------------


def test_a_silent_socket_does_not_block_tls_associations(start_receiver, pki, caplog):
    """Before: the handshake ran in the accept thread without a deadline, and a TLS echo waited
    as long as the silent socket stayed open (15.1 s for a socket held 15 s). Now it answers at once,
    and the silent socket is dropped at the handshake deadline with a log line naming the peer."""
    rx = start_receiver(ssl_context=server_context(pki.server_cert, pki.server_key, pki.ca),
                        tls_handshake_timeout=5.0)
    ctx = client_context(pki.ca, pki.client_cert, pki.client_key, check_hostname=False)
    caplog.set_level(logging.WARNING, logger="dicomcrypt.serve")
    with socket.create_connection(("127.0.0.1", rx.port)) as silent:
        silent_port = silent.getsockname()[1]
        time.sleep(0.2)
        started = time.monotonic()
        assert echo(parse_peer(_peer(rx)), calling_aet="SENDER", ssl_context=ctx, timeout=10) == 0x0000
        assert time.monotonic() - started < 3.0  # well before the silent socket's deadline
        assert associate(rx.port, [(Verification, ["1.2.840.10008.1.2"])], ssl_context=ctx).is_established
        closed = _closed_within(silent, 8.0)
    assert closed is not None
    line = next(r.getMessage() for r in caplog.records if "event=tls" in r.getMessage())
    assert "outcome=timeout" in line and f"peer=127.0.0.1:{silent_port}" in line


def test_a_failed_handshake_is_logged_with_the_peer(start_receiver, pki, caplog):
    rx = start_receiver(ssl_context=server_context(pki.server_cert, pki.server_key, pki.ca))
    caplog.set_level(logging.WARNING, logger="dicomcrypt.serve")
    with socket.create_connection(("127.0.0.1", rx.port)) as plain:
        plain.sendall(_associate_rq())  # DICOM in the clear on the TLS port
        assert _closed_within(plain, 5.0) is not None
    time.sleep(0.2)
    line = next(r.getMessage() for r in caplog.records if "event=tls" in r.getMessage())
    assert "outcome=failed" in line and "peer=127.0.0.1:" in line
    assert "BEGIN" not in line and "KEY" not in line


@pytest.mark.peer
def test_dcmtk_echoscu_over_tls_while_a_socket_is_silent(start_receiver, pki):
    exe = require_tool("echoscu")
    rx = start_receiver(ssl_context=server_context(pki.server_cert, pki.server_key, pki.ca))
    with socket.create_connection(("127.0.0.1", rx.port)):
        started = time.monotonic()
        done = __import__("subprocess").run(
            [exe, "+tls", str(pki.client_key), str(pki.client_cert), "+cf", str(pki.ca),
             "-aet", "DCMTK", "-aec", "RECEIVER", "127.0.0.1", str(rx.port)],
            capture_output=True, text=True, timeout=30,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert time.monotonic() - started < 5.0


# -- defect 4: slow and crowding peers ------------------------------------------------------


def test_a_peer_trickling_its_association_request_is_cut_at_the_pdu_deadline(start_receiver, caplog):
    """Before: a peer sending one byte every 20 s held its slot as long as it kept sending. Now
    the PDU is cut at its deadline and the slot is free again once the wait for an association
    request (the same deadline, from the connection) is over."""
    rx = start_receiver(pdu_timeout=1.0, max_associations=1)
    caplog.set_level(logging.WARNING, logger="dicomcrypt.serve")
    request = _associate_rq()
    with socket.create_connection(("127.0.0.1", rx.port)) as slow:
        started = time.monotonic()
        cut = None
        for byte in request:
            try:
                slow.send(bytes([byte]))
            except OSError:
                cut = time.monotonic() - started
                break
            if _closed_within(slow, 0.3) is not None:
                cut = time.monotonic() - started
                break
    assert cut is not None and cut < 3.0, "the trickling peer kept its association"
    assert any("reason=pdu-timeout" in r.getMessage() for r in caplog.records)
    time.sleep(0.5)
    assert echo(parse_peer(_peer(rx)), calling_aet="SENDER", timeout=5) == 0x0000  # its slot is free again


def test_one_host_cannot_take_every_association_slot(start_receiver, caplog):
    rx = start_receiver(max_associations=3, max_associations_per_peer=2)
    caplog.set_level(logging.WARNING, logger="dicomcrypt.serve")
    held = [socket.create_connection(("127.0.0.1", rx.port)) for _ in range(2)]
    try:
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", rx.port)) as third:
            assert _closed_within(third, 2.0) is not None, "a third connection from the same host was kept"
        other = AE(ae_title="OTHER")
        other.add_requested_context(Verification)
        assoc = other.associate("127.0.0.1", rx.port, ae_title="RECEIVER", bind_address=("127.0.0.2", 0))
        assert assoc.is_established, "another host was kept out"
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        for sock in held:
            sock.close()
    assert any("reason=per-peer-limit" in r.getMessage() for r in caplog.records)


def test_an_association_ends_at_its_ceiling_however_busy(start_receiver):
    rx = start_receiver(association_timeout=1.5)
    assoc = associate(rx.port, [(Verification, ["1.2.840.10008.1.2"])])
    assert assoc.is_established
    started = time.monotonic()
    while assoc.is_established and time.monotonic() - started < 6:
        assoc.send_c_echo()
        time.sleep(0.2)
    lasted = time.monotonic() - started
    assoc.abort()
    assert 1.0 < lasted < 4.0


def test_an_idle_association_is_aborted(start_receiver):
    rx = start_receiver(idle_timeout=1.0)
    assoc = associate(rx.port, [(Verification, ["1.2.840.10008.1.2"])])
    assert assoc.is_established
    time.sleep(2.5)
    assert not assoc.is_established


# -- defect 5: size ---------------------------------------------------------------------------


def _plain_image(megabytes: float) -> pydicom.Dataset:
    ds = read_quietly(sample("CT_small.dcm"))
    side = int((megabytes * 1024 * 1024 / 2) ** 0.5)
    ds.Rows = ds.Columns = side
    ds.PixelData = np.zeros((side, side), np.uint16).tobytes()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_an_instance_over_the_size_limit_is_cut_off(start_receiver, caplog):
    rx = start_receiver(accept_plain=True, max_instance_mb=1)
    caplog.set_level(logging.WARNING, logger="dicomcrypt.serve")
    big = _plain_image(3)
    assert "Status" not in store(rx.port, big)  # aborted: no response
    assert not good_files(rx.config.out)
    assert not list(rx.quarantine_dir.rglob("*.dcm"))
    assert any("instance too large" in r.getMessage() for r in caplog.records)
    assert store(rx.port, _plain_image(0.5)).Status == 0x0000  # under the limit: filed


@pytest.mark.slow
def test_serve_memory_stays_bounded_on_a_large_send(tmp_path, site_key_file):
    """A real ``serve`` process under an address-space limit; a 96 MB plain image at a
    --max-instance-mb 8 receiver costs it less than a third of that in peak RSS."""
    import subprocess
    import sys

    from net.conftest import free_port, wait_for_port

    port = free_port()
    under_limit = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30)); "
                   "sys.argv[0] = 'dicomcrypt'; runpy.run_module('dicomcrypt', run_name='__main__')")
    proc = subprocess.Popen(
        [sys.executable, "-c", under_limit, "serve", "--host", "127.0.0.1", "--port", str(port),
         "--key", str(site_key_file), "--out", str(tmp_path / "in"), "--max-instance-mb", "8"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        before = _peak_rss_mb(proc.pid)
        assert "Status" not in store(port, _plain_image(96))
        grown = _peak_rss_mb(proc.pid) - before
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert grown < 32, f"serve grew {grown:.0f} MB for an instance it should cut at 8 MiB"


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# -- quarantine: bounded record -----------------------------------------------------------------


def test_a_refused_plain_image_leaves_its_header_but_never_its_pixels(start_receiver):
    rx = start_receiver()
    ds = read_quietly(sample("CT_small.dcm"))
    assert store(rx.port, ds).Status == 0xC005
    [kept] = rx.quarantine_dir.glob("*.dcm")
    note = json.loads(kept.with_suffix(".json").read_text())
    record = pydicom.dcmread(kept)
    assert "PixelData" not in record
    assert not any(elem.VR in ("OB", "OW") and len(elem.value) > 1024 for elem in record.iterall())
    assert record.PatientName == ds.PatientName  # the header is kept for the administrator (documented)
    assert record.SOPInstanceUID == ds.SOPInstanceUID
    assert note["kept"] == "header without pixel or bulk data" and note["status"] == "0xC005"
    assert kept.stat().st_size < 8192


def test_header_only_strips_bulk_data_in_sequences_and_leaves_the_caller_alone():
    from pydicom.dataset import Dataset

    ds = read_quietly(sample("CT_small.dcm"))
    icon = Dataset()
    icon.Rows = 8
    icon.PixelData = bytes(128)
    icon.add_new(0x00091010, "OB", b"1" * 5000)
    ds.IconImageSequence = [icon]
    record = pydicom.dcmread(io.BytesIO(header_only(ds)))
    assert "PixelData" not in record and "PixelData" not in record.IconImageSequence[0]
    assert 0x00091010 not in record.IconImageSequence[0] and record.IconImageSequence[0].Rows == 8
    assert "PixelData" in ds and "PixelData" in ds.IconImageSequence[0]  # the caller's data set is intact


def _record(q: Quarantine, age_days: float, size: int) -> Path:
    path = q.keep(b"x" * size, reason="test", context={"sop_instance_uid": generate_uid()})
    stamp = time.time() - age_days * 86400
    for part in (path, path.with_suffix(".json")):
        os.utime(part, (stamp, stamp))
    return path


def test_quarantine_retention_deletes_old_records(tmp_path):
    q = Quarantine(tmp_path, max_age_s=10 * 86400)
    old, recent = _record(q, 11, 100), _record(q, 1, 100)
    assert q.prune() == 1
    assert not old.exists() and not old.with_suffix(".json").exists()
    assert recent.exists() and recent.with_suffix(".json").exists()


def test_quarantine_cap_deletes_the_oldest_first(tmp_path):
    q = Quarantine(tmp_path, max_bytes=12_000)  # five records of about 3.3 kB: two must go
    records = [_record(q, 5 - i, 3000) for i in range(5)]  # oldest first
    q.prune()
    assert [p.exists() for p in records] == [False, False, True, True, True]
    time.sleep(1.1)  # a record past the cap prunes at once (at most once a second)
    newest = q.keep(b"y" * 3000, reason="test", context={})
    assert newest.exists() and not records[2].exists()
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) <= 12_000


def test_receiver_start_prunes_the_quarantine(start_receiver, tmp_path):
    folder = tmp_path / "q"
    old = _record(Quarantine(folder), 40, 10)
    start_receiver(quarantine=folder)
    assert not old.exists()


# -- options ------------------------------------------------------------------------------------

_LIMITS = {
    "--max-associations-per-peer": "max_associations_per_peer",
    "--tls-handshake-timeout": "tls_handshake_timeout",
    "--pdu-timeout": "pdu_timeout",
    "--idle-timeout": "idle_timeout",
    "--association-timeout": "association_timeout",
    "--max-instance-mb": "max_instance_mb",
    "--quarantine-max-mb": "quarantine_max_mb",
    "--quarantine-days": "quarantine_days",
}


@pytest.mark.parametrize(("flag", "field"), _LIMITS.items())
def test_limit_options_state_the_receiver_default(flag, field):
    default = {f.name: f.default for f in dataclasses.fields(ReceiverConfig)}[field]
    option = next(o for o in serve.OPTIONS if o.flags[0] == flag)
    assert option.default is None
    stated = f"(default: {default:g}" if isinstance(default, float) else f"(default: {default}"
    assert stated in option.help


@pytest.mark.parametrize("field", ["pdu_timeout", "max_instance_mb", "max_associations_per_peer"])
def test_limits_must_be_positive(tmp_path, field):
    from dicomcrypt.errors import ReceiverConfigError

    with pytest.raises(ReceiverConfigError):
        ReceiverConfig(store="encrypted", out=tmp_path, **{field: 0}).checked()


def test_silent_connections_give_their_slot_back(start_receiver):
    """A connection that never sends its association request is closed at the PDU deadline."""
    rx = start_receiver(pdu_timeout=1.0, max_associations=3)
    with socket.create_connection(("127.0.0.1", rx.port)) as silent:
        closed = _closed_within(silent, 4.0)
    assert closed is not None and 0.5 < closed < 3.0


def test_idle_peers_do_not_leak_threads(start_receiver):
    rx = start_receiver(pdu_timeout=1.0)
    before = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", rx.port)) for _ in range(3)]
    time.sleep(3.0)
    for sock in socks:
        sock.close()
    time.sleep(0.5)
    assert threading.active_count() <= before + 1
