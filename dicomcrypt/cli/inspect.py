"""``dicomcrypt inspect``: what files hold, without a key (and without importing torch).

Everything shown comes from :func:`dicomcrypt.pipeline.inspect_dataset` (the readable
private elements and the envelope header) plus the file's size. The original geometry and
pixels are inside the encrypted payload and cannot be shown.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from dicomcrypt.cli._common import EXIT_CODES_EPILOG, EXIT_OK, EXIT_SOME_FAILED, error, human_bytes


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="show what DICOM files hold (encrypted or not), without a key",
        description=(
            "For each file (folders are walked recursively, hidden files skipped), show whether it is\n"
            "encrypted by dicomcrypt and, if so, the format version, mode, key id(s), model id, envelope\n"
            "size and placeholder size. The original image geometry is inside the encrypted payload\n"
            "and is not shown. No key is needed. Files that are not DICOM count as failures (exit 1)."
        ),
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="DICOM file or folder")
    parser.add_argument("--json", action="store_true", help="print a JSON array, one object per file")
    parser.set_defaults(func=run)


def inspect_file(path: Path) -> dict[str, Any]:
    """One file's record: ``status`` is "encrypted", "not encrypted", "not dicom" or "error"."""
    from dicomcrypt.errors import DicomCryptError, NotDicomError
    from dicomcrypt.files import read_dicom
    from dicomcrypt.pipeline import inspect_dataset

    record: dict[str, Any] = {"path": str(path)}
    try:
        record["file_bytes"] = path.stat().st_size
        ds = read_dicom(path)
        found = inspect_dataset(ds)
    except NotDicomError as exc:
        return record | {"status": "not dicom", "error": _strip_path(str(exc), path)}
    except DicomCryptError as exc:
        return record | {"status": "error", "error": _strip_path(str(exc), path)}
    except Exception as exc:  # keep going over a folder; say it is ours to fix
        return record | {"status": "error", "error": f"internal error: {type(exc).__name__}: {exc}"}
    fields = dataclasses.asdict(found) if dataclasses.is_dataclass(found) else dict(vars(found))
    record["status"] = "encrypted" if fields.get("encrypted") else "not encrypted"
    record.update(fields)
    record["sop_class"] = _sop_class_name(fields.get("sop_class_uid"))
    return record


def _strip_path(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _sop_class_name(uid: str | None) -> str:
    if not uid:
        return ""
    from pydicom.uid import UID

    return UID(uid).name


def format_record(record: dict[str, Any]) -> str:
    """Human-readable lines for one record."""
    path, status = record["path"], record["status"]
    if status in ("not dicom", "error"):
        return f"{path}: {status}: {record['error']}"
    what = record.get("modality") or "no modality"
    if record.get("sop_class"):
        what += f" ({record['sop_class']})"
    size = human_bytes(record.get("file_bytes", 0))
    if status == "not encrypted":
        pixels = "image" if record.get("has_pixel_data") else "no pixel data"
        identity = f"; identity {record['identity']}" if record.get("identity") else ""
        return f"{path}: not encrypted, {what}, {pixels}, {size}{identity}"
    rows = [
        ("format version", record.get("format_version")),
        ("mode", record.get("mode")),
        ("key id" + ("s" if len(record.get("key_ids") or ()) > 1 else ""), ", ".join(record.get("key_ids") or ())),
        ("model", record.get("model_id") or "none (standard codec)"),
        ("envelope", human_bytes(record["envelope_bytes"]) if record.get("envelope_bytes") is not None else None),
        ("placeholder", record.get("placeholder")),
        ("object", what),
        ("file size", size),
    ]
    shown = set(_SHOWN)
    rows += [(k.replace("_", " "), v) for k, v in record.items() if k not in shown and v not in (None, "", ())]
    return "\n".join([f"{path}: encrypted"] + [f"  {k:<15} {v}" for k, v in rows if v is not None])


_SHOWN = (
    "path", "status", "encrypted", "file_bytes", "format_version", "mode", "key_ids", "model_id",
    "envelope_bytes", "placeholder", "modality", "sop_class", "sop_class_uid", "has_pixel_data",
)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "name"):  # enums
        return str(value.name).lower()
    return str(value)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.files import iter_dicom_inputs

    missing = [p for p in args.paths if not p.exists()]
    if missing:
        return error(f"{missing[0]}: no such file or folder")
    records: list[dict[str, Any]] = []
    for root in args.paths:
        for path, _rel in iter_dicom_inputs(root):
            record = inspect_file(path)
            records.append(record)
            if not args.json:
                print(format_record(record))
    if args.json:
        json.dump(records, sys.stdout, indent=2, default=_json_default)
        sys.stdout.write("\n")
    elif not records:
        print("no files found", file=sys.stderr)
    failed = any(r["status"] in ("not dicom", "error") for r in records)
    return EXIT_SOME_FAILED if failed else EXIT_OK
