"""Gateway: our receiver restores and forwards to a real downstream PACS (DCMTK storescp, Orthanc),
answering upstream once the instance is durably queued; the queue's drain delivers it."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomcrypt.dicom import read_private_block
from dicomcrypt.net.address import Peer
from helpers.corpus import read_quietly
from helpers.dciodvfy import require_tool
from helpers.store_clients import dcmtk_env, store, storescu
from net.conftest import encrypted_copies, free_port, wait_for_port
from helpers.waiting import wait_until

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def start_storescp(background, folder: Path, port: int, aet: str = "PACS"):
    exe = require_tool("storescp")
    folder.mkdir(parents=True, exist_ok=True)
    process = background([exe, "-aet", aet, "-od", str(folder), str(port)], env=dcmtk_env())
    wait_for_port(port)
    return process


FAST_RETRY = {"forward_retry_first": 0.1, "forward_retry_max": 0.5}
"""Backoff for tests: a downstream that comes back is found within half a second."""


def wait_drained(rx, timeout: float = 30.0) -> None:
    """Until the receiver's forward queue is empty (delivered or given up)."""
    wait_until(lambda: rx.health()["queue"]["depth"] == 0, timeout, "forward queue drained")


def test_gateway_forwards_restored_instances_to_storescp(start_receiver, background, encrypted_files, tmp_path):
    port = free_port()
    pacs_dir = tmp_path / "pacs"
    start_storescp(background, pacs_dir, port)
    rx = start_receiver(out=None, spool=tmp_path / "spool", forward=Peer("PACS", "127.0.0.1", port),
                        quarantine=tmp_path / "q")

    done = storescu(rx.port, encrypted_files.encrypted)
    assert done.returncode == 0, done.stderr
    wait_drained(rx)
    arrived = {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(p) for p in pacs_dir.iterdir())}
    assert len(arrived) == len(encrypted_files.plain)
    for path in encrypted_files.plain:
        original = read_quietly(path)
        forwarded = arrived[str(original.SOPInstanceUID)]
        np.testing.assert_array_equal(forwarded.pixel_array, original.pixel_array)
        assert read_private_block(forwarded) is None
    assert not (tmp_path / "q").exists()
    assert sum(c.stored for c in rx.studies().values()) == len(encrypted_files.plain)
    assert sum(c.forwarded for c in rx.studies().values()) == len(encrypted_files.plain)


def test_gateway_with_out_also_files_locally(start_receiver, background, encrypted_files, tmp_path):
    port = free_port()
    start_storescp(background, tmp_path / "pacs", port)
    rx = start_receiver(out=tmp_path / "local", forward=Peer("PACS", "127.0.0.1", port))
    assert store(rx.port, pydicom.dcmread(encrypted_files.encrypted[0])).Status == 0x0000
    assert len(list((tmp_path / "local").rglob("*.dcm"))) == 1  # the queue's copy is not a .dcm
    wait_drained(rx)
    assert len(list((tmp_path / "pacs").iterdir())) == 1


def test_unreachable_downstream_is_queued_then_delivered(start_receiver, background, encrypted_files, tmp_path):
    port = free_port()  # nothing listens yet
    rx = start_receiver(out=None, spool=tmp_path / "spool", forward=Peer("PACS", "127.0.0.1", port),
                        quarantine=tmp_path / "q", **FAST_RETRY)
    ds = pydicom.dcmread(encrypted_files.encrypted[0])
    assert store(rx.port, ds).Status == 0x0000  # durably queued: the sender is done
    wait_until(lambda: rx.health()["checks"]["downstream"]["ok"] is False, what="downstream seen unreachable")
    assert rx.health()["queue"]["depth"] == 1 and not rx.health()["ready"]
    assert not (tmp_path / "q").exists()  # nothing refused, nothing quarantined

    pacs = start_storescp(background, tmp_path / "pacs", port)
    wait_drained(rx)
    assert len(list((tmp_path / "pacs").iterdir())) == 1
    assert rx.health()["ready"]

    pacs.stop()  # the PACS goes away and comes back: the stale association is re-opened
    start_storescp(background, tmp_path / "pacs2", port)
    assert store(rx.port, pydicom.dcmread(encrypted_files.encrypted[1])).Status == 0x0000
    wait_drained(rx)
    assert len(list((tmp_path / "pacs2").iterdir())) == 1


def test_downstream_rejecting_our_ae_is_reported(start_receiver, encrypted_files, tmp_path):
    pacs = start_receiver(ae_title="PACS", out=tmp_path / "pacs", allowed_aets=frozenset({"SOMEONE"}))
    rx = start_receiver(out=None, spool=tmp_path / "spool", forward=Peer("PACS", "127.0.0.1", pacs.port),
                        quarantine=tmp_path / "q", **FAST_RETRY)
    assert store(rx.port, pydicom.dcmread(encrypted_files.encrypted[0])).Status == 0x0000
    wait_until(lambda: rx.health()["checks"]["downstream"]["ok"] is False, what="downstream seen unreachable")
    assert "rejected" in rx.health()["checks"]["downstream"]["detail"]
    assert rx.health()["queue"]["depth"] == 1  # kept until the PACS is fixed
    assert not (tmp_path / "pacs").exists()


def test_downstream_failure_status_is_retried_then_quarantined(start_receiver, encrypted_files, tmp_path):
    # the downstream is another of our receivers, which refuses plain images (0xC005)
    import json

    pacs = start_receiver(ae_title="PACS", out=tmp_path / "pacs")
    rx = start_receiver(out=None, spool=tmp_path / "spool", forward=Peer("PACS", "127.0.0.1", pacs.port),
                        quarantine=tmp_path / "q", forward_max_refusals=3, **FAST_RETRY)
    assert store(rx.port, pydicom.dcmread(encrypted_files.encrypted[0])).Status == 0x0000
    wait_drained(rx)
    (note,) = (tmp_path / "q" / "forward-refused").glob("*.json")
    record = json.loads(note.read_text())
    assert record["attempts"] == 3 and "0xC005" in record["reason"]
    kept = pydicom.dcmread(note.with_suffix(".dcm"))  # the restored instance, kept for the administrator
    assert read_private_block(kept) is None
    assert sum(c.refused for c in pacs.studies().values()) == 3
    assert rx.metrics.registry.get_sample_value("dicomcrypt_forward_given_up_total") == 1


def start_orthanc(background, folder: Path) -> tuple[int, int]:
    """Orthanc with a throw-away config on free ports; returns (DICOM port, HTTP port)."""
    import json
    import urllib.request

    exe = require_tool("Orthanc")
    dicom_port, http_port = free_port(), free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "orthanc.json"
    config.write_text(json.dumps({
        "Name": "dicomcrypt-test", "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port,
        "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
        "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": True,
    }))
    background([exe, str(config)], cwd=folder)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/system", timeout=1) as reply:
                if reply.status == 200:
                    wait_for_port(dicom_port)
                    return dicom_port, http_port
        except OSError:
            time.sleep(0.1)
    pytest.fail("Orthanc did not start within 30 s")


def test_gateway_forwards_to_orthanc(start_receiver, background, encrypted_files, tmp_path):
    import json
    import urllib.request

    dicom_port, http_port = start_orthanc(background, tmp_path / "orthanc")
    rx = start_receiver(out=None, spool=tmp_path / "spool", forward=Peer("ORTHANC", "127.0.0.1", dicom_port),
                        quarantine=tmp_path / "q")
    done = storescu(rx.port, encrypted_files.encrypted)
    assert done.returncode == 0, done.stderr
    wait_drained(rx)

    api = f"http://127.0.0.1:{http_port}"
    with urllib.request.urlopen(f"{api}/instances") as reply:
        ids = json.load(reply)
    assert len(ids) == len(encrypted_files.plain)
    arrived = {}
    for orthanc_id in ids:
        with urllib.request.urlopen(f"{api}/instances/{orthanc_id}/file") as reply:
            ds = pydicom.dcmread(io.BytesIO(reply.read()))
        arrived[str(ds.SOPInstanceUID)] = ds
    for path in encrypted_files.plain:
        original = read_quietly(path)
        np.testing.assert_array_equal(arrived[str(original.SOPInstanceUID)].pixel_array, original.pixel_array)
        assert read_private_block(arrived[str(original.SOPInstanceUID)]) is None


def test_gateway_forwards_over_mutual_tls_and_serves_concurrent_senders(start_receiver, encrypted_files, site_key,
                                                                        pki, tmp_path):
    """Several upstream associations share the one downstream association; TLS both ways."""
    import threading


    from dicomcrypt.net.tls import client_context, server_context
    from helpers.store_clients import associate, good_files

    pacs = start_receiver(ae_title="PACS", out=tmp_path / "pacs", accept_plain=True,
                          ssl_context=server_context(pki.server_cert, pki.server_key, pki.ca))
    rx = start_receiver(
        out=None, spool=tmp_path / "spool", quarantine=tmp_path / "q", forward=Peer("PACS", "127.0.0.1", pacs.port),
        forward_ssl_context=client_context(pki.ca, pki.client_cert, pki.client_key, check_hostname=False),
    )
    batches = [encrypted_copies(site_key, 4, encrypted_files.plain[0].name) for _ in range(3)]
    statuses: list[int] = []

    def send(batch):
        assoc = associate(rx.port, [(batch[0].SOPClassUID, [batch[0].file_meta.TransferSyntaxUID])])
        statuses.extend(assoc.send_c_store(ds).Status for ds in batch)
        assoc.release()

    threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert statuses == [0] * 12
    wait_drained(rx)
    filed = good_files(tmp_path / "pacs")
    assert len(filed) == 12
    base = read_quietly(encrypted_files.plain[0])
    for path in filed:
        np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, base.pixel_array)
