"""``serve --http``: a real HTTP scrape of /metrics after real C-STOREs, /healthz in both states, /studies."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pydicom
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dicomcrypt.net.address import Peer
from helpers.corpus import read_quietly, sample
from helpers.store_clients import associate, store
from net.conftest import free_port

HTTP = ("127.0.0.1", 0)


def get(port: int, page: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{page}", timeout=10) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus_client's own parser: (name, labels) -> value."""
    code, kind, body = get(port, "/metrics")
    assert code == 200 and kind.startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_metrics_healthz_and_studies_after_real_c_stores(start_receiver, encrypted_files, tmp_path):
    rx = start_receiver(http=HTTP, allowed_aets=frozenset({"SENDER"}))
    for path in encrypted_files.encrypted:
        assert store(rx.port, pydicom.dcmread(path)).Status == 0x0000
    plain = read_quietly(sample("CT_small.dcm"))
    assert store(rx.port, plain).Status == 0xC005  # a plain image is refused
    stranger = associate(rx.port, [(plain.SOPClassUID, [plain.file_meta.TransferSyntaxUID])], calling="STRANGER")
    assert stranger.is_rejected

    metrics = samples(rx.http_port)
    assert metrics[("dicomcrypt_instances_total", (("outcome", "restored"), ("status", "0x0000")))] == 2
    assert metrics[("dicomcrypt_instances_total", (("outcome", "refused"), ("status", "0xC005")))] == 1
    assert metrics[("dicomcrypt_restore_seconds_count", ())] == 3
    sent = sum(path.stat().st_size for path in encrypted_files.encrypted)
    assert metrics[("dicomcrypt_received_bytes_total", ())] > sent  # Part 10 bytes plus the plain image
    assert metrics[("dicomcrypt_stored_bytes_total", ())] == sum(
        p.stat().st_size for p in rx.config.out.rglob("*.dcm") if "quarantine" not in p.parts)
    assert metrics[("dicomcrypt_associations_total", (("outcome", "accepted"),))] == 3
    assert metrics[("dicomcrypt_associations_total", (("outcome", "released"),))] == 3
    assert metrics[("dicomcrypt_associations_rejected_total", (("reason", "calling AE not recognised"),))] == 1
    assert metrics[("dicomcrypt_associations_active", ())] == 0

    code, kind, body = get(rx.http_port, "/healthz")
    health = json.loads(body)
    assert (code, kind, health["ready"]) == (200, "application/json", True)
    assert set(health["checks"]) == {"keys", "models", "output", "downstream"}
    assert health["queue"] is None  # no --forward

    code, _, body = get(rx.http_port, "/studies")
    studies = json.loads(body)["studies"]
    by_study: dict[str, dict[str, int]] = {}
    for path in (*encrypted_files.plain, sample("CT_small.dcm")):
        uid = str(read_quietly(path).StudyInstanceUID)
        by_study.setdefault(uid, {"received": 0})["received"] += 1
    assert code == 200 and set(studies) == set(by_study)
    for uid, counts in by_study.items():
        assert studies[uid]["received"] == counts["received"]
    ct = studies[str(plain.StudyInstanceUID)]
    assert (ct["stored"], ct["refused"], ct["forwarded"], ct["queued"]) == (1, 1, 0, 0)
    assert get(rx.http_port, "/nothing")[0] == 404


def test_status_endpoint_on_ipv6_loopback(start_receiver):
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    rx = start_receiver(http=("::1", 0))
    with urllib.request.urlopen(f"http://[::1]:{rx.http_port}/healthz", timeout=10) as reply:
        assert reply.status == 200 and json.load(reply)["ready"]


def test_healthz_not_ready_while_the_downstream_is_unreachable(start_receiver, encrypted_files, tmp_path):
    import time

    rx = start_receiver(http=HTTP, forward=Peer("PACS", "127.0.0.1", free_port()), forward_retry_first=0.1,
                        forward_retry_max=0.2)
    assert store(rx.port, pydicom.dcmread(encrypted_files.encrypted[0])).Status == 0x0000  # queued
    deadline = time.monotonic() + 20
    while (code := get(rx.http_port, "/healthz")[0]) == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    health = json.loads(get(rx.http_port, "/healthz")[2])
    assert code == 503 and not health["ready"]
    assert not health["checks"]["downstream"]["ok"] and "PACS@127.0.0.1" in health["checks"]["downstream"]["detail"]
    assert health["checks"]["keys"]["ok"] and health["checks"]["output"]["ok"]
    assert health["queue"]["depth"] == 1 and health["queue"]["oldest_age_seconds"] > 0
    metrics = samples(rx.http_port)
    assert metrics[("dicomcrypt_forward_queue_depth", ())] == 1
    assert metrics[("dicomcrypt_forward_failures_total", (("reason", "unreachable"),))] >= 1
    studies = json.loads(get(rx.http_port, "/studies")[2])["studies"]
    assert [(s["stored"], s["queued"], s["forwarded"]) for s in studies.values()] == [(1, 1, 0)]
