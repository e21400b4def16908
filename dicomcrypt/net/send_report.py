"""What ``send`` did: one record per instance, summarised per study.

The study is the unit users think in, so the summary counts per Study Instance UID what was
sent (and how: encrypted here, already encrypted, plain), what passed through as a non-image,
and what failed with the peer's status code and comment. The records of failed instances are
the input of a retry (``--failed-list`` / ``--retry-failed``).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dicomcrypt.atomic import write_atomic
from dicomcrypt.logsafe import escape


_GENERAL_WARNINGS = frozenset({0x0001, 0x0107, 0x0116})
"""PS3.7 Annex C warnings any DIMSE service may answer (optional attributes not supported,
attribute list error, attribute value out of range)."""


@dataclass(frozen=True)
class InstanceResult:
    """What happened to one instance.

    ``status`` is the DIMSE status the peer answered (None when no answer came: not sent,
    connection lost, refused locally); ``error`` explains any failure in words.
    """

    path: str
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    study_uid: str = ""
    modality: str = ""
    treatment: str = ""
    mode: str | None = None
    note: str = ""
    """Why encryption fell back to another mode (e.g. palette colour -> standard)."""
    status: int | None = None
    comment: str = ""
    error: str | None = None
    bytes_sent: int = 0
    envelope_bytes: int = 0
    seal_seconds: float = 0.0
    send_seconds: float = 0.0
    """C-STORE request to answer; the receiving node answers once the instance is filed."""

    @property
    def arrived(self) -> bool:
        """The peer answered Success or a Warning (PS3.4 B.2.3 ``Bxxx``; PS3.7 C ``0001``,
        ``0107``, ``0116``): a warning means the instance was stored."""
        return self.error is None and self.status is not None and (
            self.status == 0x0000 or 0xB000 <= self.status <= 0xBFFF or self.status in _GENERAL_WARNINGS
        )

    @property
    def warning(self) -> bool:
        return self.arrived and self.status != 0x0000


@dataclass
class SendReport:
    """Every instance's record, in the order they finished."""

    peer: str
    results: list[InstanceResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def failed(self) -> list[InstanceResult]:
        return [r for r in self.results if not r.arrived]

    @property
    def all_arrived(self) -> bool:
        return bool(self.results) and not self.failed and not self.interrupted

    @property
    def bytes_sent(self) -> int:
        return sum(r.bytes_sent for r in self.results if r.arrived)

    def by_study(self) -> dict[str, list[InstanceResult]]:
        studies: dict[str, list[InstanceResult]] = defaultdict(list)
        for result in self.results:
            studies[result.study_uid or "(no study)"].append(result)
        return dict(sorted(studies.items()))

    def summary(self) -> str:
        """Per-study lines, then each failure with the peer's status and comment."""
        arrived = [r for r in self.results if r.arrived]
        rate = len(arrived) / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"send to {self.peer}: {len(self.results)} instances in {self.seconds:.1f} s "
            f"({rate:.1f}/s, {self.bytes_sent / 1e6:.1f} MB): {len(arrived)} arrived, {len(self.failed)} failed"
            + (" (interrupted: the rest was not sent)" if self.interrupted else "")
        ]
        for study, results in self.by_study().items():
            lines.append(f"  study {escape(study)} [{escape(_modalities(results))}]: {_study_counts(results)}")
        if self.failed:
            lines.append(f"failed ({len(self.failed)}):")
            lines.extend(f"  {escape(r.path)}: {describe_failure(r)}"
                         for r in sorted(self.failed, key=lambda r: r.path))
        return "\n".join(lines)


def instance_line(result: InstanceResult) -> str:
    """The ``--verbose`` line of one instance: ``sent <path> (<how>)`` or ``FAILED <path>: <why>``."""
    if result.arrived:
        return f"sent    {escape(result.path)} ({describe_treatment(result)})"
    return f"FAILED  {escape(result.path)}: {describe_failure(result)}"


def _modalities(results: Iterable[InstanceResult]) -> str:
    return ",".join(sorted({r.modality for r in results if r.modality})) or "-"


def _study_counts(results: list[InstanceResult]) -> str:
    arrived = [r for r in results if r.arrived]
    how = Counter(describe_treatment(r) for r in arrived if r.treatment != "not an image")
    parts = [f"{len(results)} instances", f"{len(arrived)} arrived"]
    if how:
        parts[-1] += " (" + ", ".join(f"{n} {what}" for what, n in sorted(how.items())) + ")"
    non_images = sum(1 for r in arrived if r.treatment == "not an image")
    if non_images:
        parts.append(f"{non_images} non-image passed through")
    warnings = sum(1 for r in arrived if r.warning)
    if warnings:
        parts.append(f"{warnings} with a warning status")
    parts.append(f"{len(results) - len(arrived)} failed")
    return ", ".join(parts)


def describe_treatment(result: InstanceResult) -> str:
    """How an instance travelled: ``encrypted lossless``, ``already encrypted``, ``plain``, ..."""
    if result.treatment == "encrypt":
        return f"encrypted {result.mode}" if result.mode else "encrypted"
    return result.treatment


def describe_failure(result: InstanceResult) -> str:
    """``0xA700 Out of resources: <peer's comment>`` or the local reason, on one line (the
    comment is the peer's and a reason may quote a file: control characters are escaped)."""
    if result.error is not None:
        return escape(result.error)
    if result.status is None:
        return "no answer from the peer"
    text = f"peer answered 0x{result.status:04X} {status_meaning(result.status)}"
    return f"{text}: {escape(result.comment)}" if result.comment else text


def status_meaning(code: int) -> str:
    """The Storage Service Class meaning of a C-STORE status (PS3.4 B.2.3, PS3.7 C)."""
    from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS, code_to_category

    known = STORAGE_SERVICE_CLASS_STATUS.get(code)
    if known is not None:
        return f"({known[0].lower()}: {known[1]})" if known[1] else f"({known[0].lower()})"
    return f"({code_to_category(code).lower()})"


def write_failed_list(path: str | os.PathLike[str], report: SendReport) -> int:
    """Write the paths of the instances that did not arrive, one per line, atomically.

    Returns how many were written. An empty list is written too, so a stale list from an
    earlier run never survives a successful retry.
    """
    target = Path(path)
    failed = sorted({r.path for r in report.failed})
    write_atomic(target, "".join(f"{p}\n" for p in failed).encode("utf-8"), force=True)
    return len(failed)


def read_failed_list(path: str | os.PathLike[str]) -> list[str]:
    """The paths in a list written by :func:`write_failed_list` (blank lines and # comments skipped)."""
    from dicomcrypt.errors import InvalidInputError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"failed-instances list {str(path)!r}: cannot read: {exc.strerror or exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
