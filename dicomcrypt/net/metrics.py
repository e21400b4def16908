"""The receiving node's Prometheus metrics: one registry per :class:`~dicomcrypt.net.scp.Receiver`.

Per receiver, not prometheus-client's global registry, so two receivers in one process (tests,
a gateway and its downstream) never count into each other. Everything is updated in the
receiving process from what the unit of work returns (:class:`InstanceResult`) and from
association and forwarding events, so a pool of restore processes needs no shared counters.

Names (all prefixed ``dicomcrypt_``), as ``docs/operations.md ("Monitoring")`` lists them:

- ``instances_total{outcome,status}``: C-STOREs answered, by outcome and status code;
- ``received_bytes_total`` / ``stored_bytes_total``: P-DATA received; bytes filed or queued;
- ``restore_seconds``: histogram of the per-instance work (verify, decrypt, restore, file, queue);
- ``associations_active``, ``associations_total{outcome}``, ``associations_rejected_total{reason}``;
- ``forward_queue_depth``, ``forward_queue_bytes``, ``forward_queue_oldest_age_seconds``: read from
  the queue at scrape time;
- ``forward_attempts_total``, ``forward_failures_total{reason}``, ``forwarded_total``,
  ``forward_given_up_total``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from dicomcrypt.net.forward_queue import QueueItem, QueueStats
from dicomcrypt.net.store_handler import InstanceResult

__all__ = ["ReceiverMetrics"]

_RESTORE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ReceiverMetrics:
    """The metrics of one receiver; :attr:`registry` is what ``/metrics`` serves."""

    def __init__(self, queue_stats: Callable[[], QueueStats] | None = None) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.instances = Counter("dicomcrypt_instances", "C-STOREs answered, by outcome and status",
                                 ["outcome", "status"], registry=registry)
        self.received_bytes = Counter("dicomcrypt_received_bytes", "Bytes of instances received (P-DATA values)",
                                      registry=registry)
        self.stored_bytes = Counter("dicomcrypt_stored_bytes", "Bytes of instances filed and/or queued to forward",
                                    registry=registry)
        self.restore_seconds = Histogram("dicomcrypt_restore_seconds",
                                         "Seconds per instance: verify, decrypt, restore, file and queue",
                                         buckets=_RESTORE_BUCKETS, registry=registry)
        self._open: set[int] = set()
        self._open_lock = threading.Lock()
        self.associations_active = Gauge("dicomcrypt_associations_active", "Associations open now",
                                         registry=registry)
        self.associations_active.set_function(lambda: len(self._open))
        self.associations = Counter("dicomcrypt_associations", "Associations by how they ended or began",
                                    ["outcome"], registry=registry)
        self.rejected = Counter("dicomcrypt_associations_rejected", "Associations rejected, by reason",
                                ["reason"], registry=registry)
        self.forward_attempts = Counter("dicomcrypt_forward_attempts", "C-STOREs tried downstream",
                                        registry=registry)
        self.forward_failures = Counter("dicomcrypt_forward_failures", "Failed downstream attempts, by reason",
                                        ["reason"], registry=registry)
        self.forwarded = Counter("dicomcrypt_forwarded", "Instances delivered downstream", registry=registry)
        self.given_up = Counter("dicomcrypt_forward_given_up",
                                "Instances taken out of the queue after too many refusals (quarantined)",
                                registry=registry)
        if queue_stats is not None:
            depth = Gauge("dicomcrypt_forward_queue_depth", "Instances waiting to be forwarded", registry=registry)
            size = Gauge("dicomcrypt_forward_queue_bytes", "Bytes waiting to be forwarded", registry=registry)
            age = Gauge("dicomcrypt_forward_queue_oldest_age_seconds",
                        "Seconds since the oldest waiting instance was accepted (0: empty)", registry=registry)
            depth.set_function(lambda: queue_stats().depth)
            size.set_function(lambda: queue_stats().bytes)
            age.set_function(lambda: queue_stats().oldest_age_s)

    def record_instance(self, result: InstanceResult, received_bytes: int) -> None:
        """Count one answered C-STORE (in the receiving process, from the unit of work's result)."""
        self.instances.labels(outcome=result.outcome, status=f"0x{result.status.code:04X}").inc()
        self.received_bytes.inc(received_bytes)
        self.stored_bytes.inc(result.bytes_stored)
        if result.seconds:
            self.restore_seconds.observe(result.seconds)

    def record_association(self, outcome: str, assoc: Any, reason: str = "") -> None:
        """``accepted`` opens one; ``released``/``aborted`` close one; ``rejected`` counts its ``reason``."""
        self.associations.labels(outcome=outcome).inc()
        with self._open_lock:
            if outcome == "accepted":
                self._open.add(id(assoc))
            else:
                self._open.discard(id(assoc))
        if outcome == "rejected":
            self.rejected.labels(reason=reason or "other").inc()

    def connection_closed(self, assoc: Any) -> None:
        """However it ended (timeouts, a dropped socket), a closed connection is no longer open."""
        with self._open_lock:
            self._open.discard(id(assoc))

    def record_forward(self, event: str, item: QueueItem | None) -> None:
        """The queue drain's listener (:data:`dicomcrypt.net.forward.ForwardListener`)."""
        if event == "attempt":
            self.forward_attempts.inc()
        elif event in ("unreachable", "refused"):
            self.forward_failures.labels(reason=event).inc()
        elif event == "forwarded":
            self.forwarded.inc()
        elif event == "gave_up":
            self.forward_failures.labels(reason="refused").inc()
            self.given_up.inc()
