"""``dicomcrypt models``: the installed models, and ``dicomcrypt models show ID`` for one card.

The list shows each model's id, architecture, channels, weights size, the first 16 hex digits of
its SHA-256 (and whether the weights on disk match it) and the held-out quality its metadata
records. ``show`` prints the model card (Markdown); it takes a shipped id or a model folder.
"""

from __future__ import annotations

import argparse
import json
import sys

from dicomcrypt.cli._common import EXIT_CODES_EPILOG, EXIT_OK, EXIT_SOME_FAILED, error, human_bytes


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list installed models with their measured quality; 'models show ID' prints a model card",
        description=__doc__,
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="machine-readable list")
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION")
    show = actions.add_parser("show", help="print a model's card", description="Print a model's card.")
    show.add_argument("model", metavar="ID", help="model id (name@version) or model folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.evaluation import catalogue

    if getattr(args, "models_action", None) == "show":
        try:
            entry = catalogue.find_model(args.model)
        except DicomCryptError as exc:
            return error(str(exc))
        if entry.card_path is None:
            print(json.dumps({k: v for k, v in json.loads(entry.metadata_path.read_text()).items()
                              if k not in ("calibration", "calibration_peaks")}, indent=2))
        else:
            print(entry.card_path.read_text(encoding="utf-8"), end="")
        if not entry.sha256_ok:
            print(f"dicomcrypt: warning: model {entry.model_id}: the SHA-256 of the weights does not match its "
                  "metadata; load_model will refuse it", file=sys.stderr)
            return EXIT_SOME_FAILED
        return EXIT_OK

    from dicomcrypt.codec.registry import DEFAULT_CODECS, DEFAULT_MODELS

    entries = catalogue.installed_models()
    defaults = set(DEFAULT_CODECS.values())  # what encrypt and send use when no --model is named
    autoencoders = set(DEFAULT_MODELS.values())  # what train, evaluate and bench start from
    if args.json:
        print(json.dumps([
            {"model_id": e.model_id, "default": e.model_id in defaults,
             "default_autoencoder": e.model_id in autoencoders, "arch": e.arch, "channels": e.channels,
             "weights_bytes": e.weights_bytes, "sha256": e.sha256, "sha256_ok": e.sha256_ok,
             "held_out": list(e.held_out)}
            for e in entries
        ], indent=2))
    else:
        print(f"{'model':<22} {'arch':<12} {'ch':>2} {'weights':>9}  {'sha256':<17} quality (card, lossy mode)")
        for e in entries:
            sha = e.sha256[:16] + ("" if e.sha256_ok else " MISMATCH")
            name = e.model_id + (" *" if e.model_id in defaults else " +" if e.model_id in autoencoders else "")
            print(f"{name:<22} {e.arch:<12} {e.channels:>2} {human_bytes(e.weights_bytes):>9}  {sha:<17} "
                  f"{e.quality_summary()}")
        print("* default for its channel count (encrypt, send)")
        print("+ default autoencoder for its channel count (train, evaluate, bench)")
    return EXIT_OK if all(e.sha256_ok for e in entries) else EXIT_SOME_FAILED
