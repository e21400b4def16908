"""Per-study counts: the study is the unit users think in ("did all 312 CT slices arrive?")."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

__all__ = ["StudyCounts", "StudyLedger"]


@dataclass(frozen=True)
class StudyCounts:
    """What one study has seen at this receiver since it started.

    ``received`` counts every C-STORE (retries included); ``stored`` those answered success
    (filed, kept, forwarded, or identical duplicates); ``refused`` those answered a failure.
    ``series`` and ``instances`` count distinct UIDs answered success. ``forwarded`` counts
    deliveries to the ``--forward`` peer (also of instances a previous run queued).
    """

    received: int = 0
    stored: int = 0
    refused: int = 0
    series: int = 0
    instances: int = 0
    forwarded: int = 0


@dataclass
class _Study:
    received: int = 0
    stored: int = 0
    refused: int = 0
    series: set[str] = field(default_factory=set)
    instances: set[str] = field(default_factory=set)
    forwarded: int = 0


class StudyLedger:
    """Thread-safe tally of outcomes by Study Instance UID (``""`` when it could not be read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._studies: dict[str, _Study] = {}

    def record(self, study_uid: str, series_uid: str, sop_instance_uid: str, *, success: bool) -> None:
        with self._lock:
            study = self._studies.setdefault(study_uid, _Study())
            study.received += 1
            if success:
                study.stored += 1
                study.series.add(series_uid)
                study.instances.add(sop_instance_uid)
            else:
                study.refused += 1

    def record_forwarded(self, study_uid: str) -> None:
        with self._lock:
            self._studies.setdefault(study_uid, _Study()).forwarded += 1

    def snapshot(self) -> dict[str, StudyCounts]:
        with self._lock:
            return {
                uid: StudyCounts(s.received, s.stored, s.refused, len(s.series), len(s.instances), s.forwarded)
                for uid, s in self._studies.items()
            }
