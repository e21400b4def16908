"""``dicomcrypt encrypt`` and ``dicomcrypt decrypt``: one batch runner, two recipes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dicomcrypt.cli._common import EXIT_CODES_EPILOG, whole_number

MODES = ("lossless", "lossy", "standard")
LATENT_FORMATS = ("u8", "f16")

_BATCH_NOTES = """
IN may be a file or a folder (walked recursively; hidden files and DICOMDIR are skipped).
The output tree mirrors the input tree. Inputs are never modified; each output is written
to a temporary file and renamed, so it is complete or absent. Existing outputs are skipped
unless --force, so re-running after a failure redoes only what is missing. Non-image objects
(SR, RT Plan, ...) and, for decrypt, files that are not encrypted are copied unchanged.
Files that are not DICOM are reported as failed and not copied.
"""


def default_jobs() -> int:
    """CPUs this process may use (respects affinity and container CPU sets where visible)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="IN", help="DICOM file or folder")
    # a string, not a Path: a trailing "/" (file IN into folder OUT) must survive
    parser.add_argument("output", metavar="OUT", help="output file or folder (not inside IN)")
    parser.add_argument(
        "--jobs", "-j", type=whole_number(1), default=None, metavar="N",
        help=f"worker processes (default: all CPUs, here {default_jobs()}); 1 runs in this process",
    )
    parser.add_argument("--force", "-f", action="store_true", help="overwrite existing outputs")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar on stderr (default: when stderr is a terminal and there are several files)",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_const", const=1, dest="verbosity",
                           help="a line per file")
    verbosity.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity",
                           help="no summary unless something failed")
    parser.set_defaults(verbosity=0)


def add_parsers(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    enc = subparsers.add_parser(
        "encrypt",
        help="encrypt the pixel data of DICOM files",
        description=(
            "Encrypt the pixel data of every DICOM image under IN into OUT. The pixels are replaced\n"
            "by a small placeholder that reads ENCRYPTED; the originals travel in an AES-256-GCM\n"
            "envelope in a private block.\n\nmodes:\n"
            "  lossless  autoencoder latent + residual; restored pixels are identical (default)\n"
            "  lossy     autoencoder latent only (the paper's scheme); restores a derived lossy image\n"
            "  standard  pixels coded losslessly with JPEG-LS, no autoencoder; identical on restore\n"
            "Images the autoencoder cannot serve (palette colour, 1-bit, 32-bit, float) use\n"
            "standard; the summary says so.\n" + _BATCH_NOTES
        ),
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    enc.add_argument("--key", "-k", required=True, type=Path, metavar="FILE",
                     help="site key file (from dicomcrypt keygen)")
    mode = enc.add_mutually_exclusive_group()
    mode.add_argument("--mode", "-m", choices=MODES, default="lossless", help="default: lossless")
    mode.add_argument("--lossy", dest="mode", action="store_const", const="lossy", help="same as --mode lossy")
    enc.add_argument("--model", metavar="ID", default=None,
                     help="autoencoder model id, e.g. paper-grey@1 (default: chosen by the image's colour)")
    enc.add_argument("--latent", choices=LATENT_FORMATS, default="u8", dest="latent_format",
                     help="latent storage: 8-bit quantised (default) or float16")
    _add_batch_arguments(enc)
    enc.set_defaults(func=run, operation="encrypt")

    dec = subparsers.add_parser(
        "decrypt",
        help="restore DICOM files encrypted by dicomcrypt",
        description=(
            "Restore every file under IN into OUT. Lossless and standard files get their original\n"
            "pixels back, verified by a SHA-256 digest; lossy files become derived images with a new\n"
            "SOP Instance UID. A wrong or missing key fails the file and names the key id it needs.\n"
            + _BATCH_NOTES
        ),
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dec.add_argument("--key", "-k", required=True, type=Path, action="append", metavar="PATH", dest="keys",
                     help="key file, or folder of *.key files; repeat for several")
    _add_batch_arguments(dec)
    dec.set_defaults(func=run, operation="decrypt")


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.cli.batch import Job, run_batch

    if args.operation == "encrypt":
        job = Job("encrypt", (str(args.key),), mode=args.mode, model=args.model,
                  latent_format=args.latent_format, force=args.force)
    else:
        job = Job("decrypt", tuple(str(k) for k in args.keys), force=args.force)
    return run_batch(
        job,
        args.input,
        args.output,
        jobs=args.jobs or default_jobs(),
        progress=args.progress,
        verbosity=args.verbosity,
    )
