"""``dicomcrypt jobs status OUT``: what a batch job (encrypt, decrypt, rekey of a folder) has done,
failed and left, read from the job manifest in its OUT (:mod:`dicomcrypt.runner.manifest`).
``dicomcrypt jobs queue SPOOL``: what a ``serve --forward`` gateway has still to deliver, read
from its forward queue (:mod:`dicomcrypt.net.forward_queue`); works while ``serve`` runs."""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

from dicomcrypt.cli._common import EXIT_CODES_EPILOG, EXIT_OK, error

OUTCOMES = ("done", "passed", "skipped", "failed", "left")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "jobs",
        help="where a batch job stands (read from the manifest in its OUT)",
        description=(
            "encrypt, decrypt and rekey of a folder keep a manifest in OUT\n"
            "(OUT/.dicomcrypt-manifest.sqlite): the job's identity, every planned input and its\n"
            "outcome. Re-running the same command resumes the job; 'jobs status OUT' reports on it.\n"
            "The manifest holds paths, outcomes and key ids, never keys or patient data."
        ),
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", dest="action", required=True)
    status = actions.add_parser(
        "status",
        help="files done, passed through, skipped, failed and left; the failures with their errors",
        description="Counts of the job writing into OUT (left: planned, not finished yet), its failed files "
                    "with their errors, its identity (operation, IN, key ids, mode, model) and times.",
    )
    status.add_argument("output", type=Path, metavar="OUT", help="the OUT folder of an encrypt, decrypt or rekey")
    status.add_argument("--json", action="store_true", help="one JSON object on stdout, for scripts")
    status.set_defaults(func=run_status)
    queue = actions.add_parser(
        "queue",
        help="what a serve --forward gateway has still to deliver (its forward queue)",
        description="Depth, size and age of the forward queue in SPOOL (serve's --spool, else its --out), "
                    "per study, and the oldest waiting instances with their attempts and last error.",
    )
    queue.add_argument("spool", type=Path, metavar="SPOOL", help="the --spool (or --out) folder of serve --forward")
    queue.add_argument("--json", action="store_true", help="one JSON object on stdout, for scripts")
    queue.set_defaults(func=run_queue)


def run_status(args: argparse.Namespace) -> int:
    from dicomcrypt.errors import ManifestError
    from dicomcrypt.runner import Manifest

    try:
        manifest = Manifest.read(args.output)
        try:
            status = manifest.status()
        finally:
            manifest.close()
    except ManifestError as exc:
        return error(str(exc))
    counts = {k: status.counts.get(k, 0) for k in OUTCOMES}
    if args.json:
        print(json.dumps({
            "manifest": str(manifest.path),
            "job": status.identity,
            "started": _iso(status.started),
            "updated": _iso(status.updated),
            "counts": {**counts, "total": status.counts.get("total", 0)},
            "failed": [{"path": rel, "error": err, "attempts": n} for rel, err, n in status.failed],
        }, indent=2))
        return EXIT_OK
    print(_text(status.identity, counts, status.started, status.updated, status.failed))
    return EXIT_OK


def run_queue(args: argparse.Namespace) -> int:
    from dicomcrypt.errors import ForwardQueueError
    from dicomcrypt.logsafe import escape
    from dicomcrypt.net.forward_queue import ForwardQueue

    try:
        queue = ForwardQueue.existing(args.spool)
        try:
            stats, waiting = queue.stats(), queue.waiting()
        finally:
            queue.close()
    except ForwardQueueError as exc:
        return error(str(exc))
    if args.json:
        print(json.dumps({
            "queue": str(queue.folder), "depth": stats.depth, "bytes": stats.bytes,
            "oldest_age_seconds": round(stats.oldest_age_s, 3), "by_study": stats.by_study,
            "oldest": [{**dataclasses.asdict(item), "enqueued": _iso(item.enqueued),
                        "next_attempt": _iso(item.next_attempt)} for item in waiting],
        }, indent=2))
        return EXIT_OK
    lines = [f"forward queue {escape(queue.folder)}: {stats.depth} instance(s), {stats.bytes} bytes, "
             f"oldest {stats.oldest_age_s:.0f} s old"]
    lines += [f"  study {escape(uid)}: {n}" for uid, n in sorted(stats.by_study.items())]
    for item in waiting:
        error_text = f", last error: {escape(item.last_error)}" if item.last_error else ""
        lines.append(f"  {escape(item.sop_instance_uid)}: queued {_iso(item.enqueued)}, "
                     f"{item.attempts} refusal(s){error_text}")
    print("\n".join(lines))
    return EXIT_OK


def _text(
    identity: dict[str, object],
    counts: dict[str, int],
    started: float,
    updated: float,
    failed: tuple[tuple[str, str, int], ...],
) -> str:
    from dicomcrypt.logsafe import escape

    settings = ", ".join(
        f"{k} {_value(v)}" for k, v in sorted(identity.items()) if k not in ("operation", "input")
    )
    lines = [
        f"job: {identity.get('operation')} of {escape(identity.get('input'))}",
        *([f"  settings: {settings}"] if settings else []),
        f"  started {_iso(started)}, last updated {_iso(updated)}",
        f"files: {sum(counts.values())}: " + ", ".join(f"{n} {k}" for k, n in counts.items()),
    ]
    if failed:
        lines.append(f"failed ({len(failed)}):")
        lines.extend(f"  {escape(rel)}: {escape(err)} (attempts: {n})" for rel, err, n in failed)
    return "\n".join(lines)


def _value(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
