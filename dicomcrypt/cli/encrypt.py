"""``dicomcrypt encrypt`` and ``dicomcrypt decrypt``: one batch runner, two recipes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dicomcrypt.cli._common import EXIT_CODES_EPILOG, add_verbosity, whole_number
from dicomcrypt.runner.worker import usable_cpus
from dicomcrypt.cli._targets import (
    ENCRYPTION_OPTIONS,
    NO_TARGET_HINT,
    encryption_settings_from_args,
    identity_options_usage_error,
)
from dicomcrypt.config import add_arguments, resolve
from dicomcrypt.limits import DEFAULT_IMAGE_MB, DEFAULT_MODEL_MEGAPIXELS

if TYPE_CHECKING:
    from dicomcrypt.runner import Backend, Job

MODES = ("lossless", "lossy", "standard")

_BATCH_NOTES = """
IN may be a file or a folder (walked recursively; hidden files and DICOMDIR are skipped).
The output tree mirrors the input tree. Inputs are never modified; each output is written
to a temporary file and renamed, so it is complete or absent. Existing outputs are skipped
unless --force, so re-running after a failure redoes only what is missing. Non-image objects
(SR, RT Plan, ...) and, for decrypt, files that are not encrypted are copied unchanged.
Files that are not DICOM are reported as failed and not copied.
"""


def _add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="IN", help="DICOM file or folder")
    # a string, not a Path: a trailing "/" (file IN into folder OUT) must survive
    parser.add_argument("output", metavar="OUT", help="output file or folder (not inside IN)")
    parser.add_argument(
        "--jobs", "-j", type=whole_number(1), default=None, metavar="N",
        help=f"worker processes (default: all CPUs, here {usable_cpus()}); 1 runs in this process",
    )
    parser.add_argument("--force", "-f", action="store_true", help="overwrite existing outputs")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar on stderr (default: when stderr is a terminal and there are several files)",
    )
    cluster = parser.add_argument_group("Dask cluster (docs/scale.md; keys on a cluster: docs/security.md)")
    cluster.add_argument(
        "--cluster", metavar="ADDRESS", type=_cluster_address,
        help="run on a Dask cluster: tcp://HOST:PORT or tls://HOST:PORT of its scheduler (IN, OUT and, over "
             "tcp://, the key files at the same absolute paths on every worker), or local:N for N worker "
             "processes on this machine",
    )
    cluster.add_argument("--cluster-tls-ca", type=Path, metavar="PEM", help="CA certificate of a tls:// cluster")
    cluster.add_argument("--cluster-tls-cert", type=Path, metavar="PEM",
                         help="this client's certificate for a tls:// cluster")
    cluster.add_argument("--cluster-tls-key", type=Path, metavar="PEM",
                         help="the private key of --cluster-tls-cert (if not in the same file)")
    add_verbosity(parser, more="a line per file", fewer="no summary unless something failed")


def _cluster_address(text: str) -> str:
    """An argparse ``type``: a wrong ``--cluster`` is a usage error."""
    from dicomcrypt.errors import InvalidInputError
    from dicomcrypt.runner.dask import check_address

    try:
        return check_address(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
            "standard; the summary says so.\n\n"
            "Who can decrypt: holders of the site key (--key), and holders of the private key of\n"
            "each public recipient (--recipient, --recipients-file); at least one, 16 at most.\n"
            + _BATCH_NOTES
        ),
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(enc, ENCRYPTION_OPTIONS, table=None)
    mode = enc.add_mutually_exclusive_group()
    mode.add_argument("--mode", "-m", choices=MODES, default="lossless", help="default: lossless")
    mode.add_argument("--lossy", dest="mode", action="store_const", const="lossy", help="same as --mode lossy")
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
    add_opening_keys(dec, "key that opens the files")
    dec.add_argument("--identity-key", action="append", default=[], type=Path, metavar="KEY.pem",
                     help="RSA private key that restores identities protected with --protect-identity (or by "
                          "another PS3.15 de-identifier); without it pixels are restored and the identity stays "
                          "de-identified, with a note")
    limits = dec.add_argument_group("decode limits (a payload over one is refused unread; docs/security.md)")
    limits.add_argument("--max-image-mb", type=whole_number(1), default=DEFAULT_IMAGE_MB, metavar="MB",
                        help=f"largest restored pixel data of one file, in MiB (default: {DEFAULT_IMAGE_MB})")
    limits.add_argument("--max-model-megapixels", type=whole_number(1), default=DEFAULT_MODEL_MEGAPIXELS,
                        metavar="N", help="most pixels the model may decode for one file, in millions "
                                          f"(default: {DEFAULT_MODEL_MEGAPIXELS})")
    add_restore_output_options(dec)
    _add_batch_arguments(dec)
    dec.set_defaults(func=run, operation="decrypt")


def add_restore_output_options(parser: argparse.ArgumentParser) -> None:
    """``--output-syntax`` and ``--uid-root``: how restored instances are written (docs/cli.md)."""
    from dicomcrypt.dicom.output_syntax import OUTPUT_SYNTAX_CHOICES

    out = parser.add_argument_group("restored instances (docs/dicom/output-syntax.md)")
    out.add_argument("--output-syntax", choices=OUTPUT_SYNTAX_CHOICES, default="original",
                     help="transfer syntax of restored files: the original one when it was lossless, else JPEG-LS "
                          "lossless (default: original); or always jpeg-ls, jpeg2000-lossless, explicit-little")
    out.add_argument("--uid-root", type=uid_root_argument, metavar="ROOT",
                     help="UID root for the new SOP Instance UID of a lossy restore (default: a 2.25 UUID UID); "
                          "either way derived from the source UID and the payload, so the same on every restore")


def uid_root_argument(text: str) -> str:
    """An argparse ``type``: a malformed ``--uid-root`` is a usage error."""
    from dicomcrypt.dicom.derived import check_uid_root
    from dicomcrypt.errors import InvalidInputError

    try:
        return check_uid_root(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_opening_keys(parser: argparse.ArgumentParser, what: str) -> None:
    """``--key PATH`` (repeatable, into ``args.keys``): the secrets that open envelopes."""
    parser.add_argument("--key", "-k", required=True, type=Path, action="append", metavar="PATH", dest="keys",
                        help=f"{what}: site key or recipient private key file, folder of *.key files, "
                             "or keyring .toml; repeat for several")


def run(args: argparse.Namespace) -> int:
    from dicomcrypt.cli._common import EXIT_USAGE, error
    from dicomcrypt.crypto import KeyRing
    from dicomcrypt.crypto.cms import IdentityKey
    from dicomcrypt.errors import DicomCryptError
    from dicomcrypt.limits import DecodeLimits
    from dicomcrypt.runner import DecryptJob, EncryptJob

    job: Job
    if args.operation == "encrypt":
        resolve(args, ENCRYPTION_OPTIONS, table=None)  # defaults only: encrypt reads no config file
        usage = identity_options_usage_error("encrypt", args)
        if usage is not None:
            return usage
        try:
            settings = encryption_settings_from_args(args)
        except (DicomCryptError, OSError) as exc:
            return error(str(exc))
        if settings is None:
            print(f"dicomcrypt encrypt: error: {NO_TARGET_HINT}", file=sys.stderr)
            return EXIT_USAGE
        job = EncryptJob(settings)
    else:
        try:
            limits = DecodeLimits.from_options(
                max_image_mb=args.max_image_mb, max_model_megapixels=args.max_model_megapixels
            )
            job = DecryptJob(KeyRing.load(args.keys), tuple(IdentityKey.load(p) for p in args.identity_key), limits,
                             output_syntax=args.output_syntax, uid_root=args.uid_root)
        except (DicomCryptError, OSError) as exc:
            return error(str(exc))
    return run_job(job, args)


def run_job(job: Job, args: argparse.Namespace) -> int:
    """Run a batch job with the batch options of :func:`_add_batch_arguments` (also for ``rekey``)."""
    from dicomcrypt.cli._common import error
    from dicomcrypt.cli.batch import run_batch
    from dicomcrypt.errors import ClusterError, InvalidInputError

    try:
        backend = cluster_backend(args)
        return run_batch(
            job,
            args.input,
            args.output,
            jobs=args.jobs or usable_cpus(),
            force=args.force,
            progress=args.progress,
            verbosity=args.verbosity,
            backend=backend,
        )
    except (ClusterError, InvalidInputError) as exc:
        return error(str(exc))


def cluster_backend(args: argparse.Namespace) -> Backend | None:
    """The Dask backend that ``--cluster`` asks for, or None (the local pool). Over plain tcp://
    the workers load the keys themselves: from the key files given here (``--key``, and
    ``--to`` files for rekey), at the same absolute paths."""
    from dicomcrypt.errors import InvalidInputError

    if args.cluster is None:
        if args.cluster_tls_ca or args.cluster_tls_cert or args.cluster_tls_key:
            raise InvalidInputError("--cluster-tls-* options need --cluster tls://HOST:PORT")
        return None
    from dicomcrypt.runner.dask import DaskBackend, cluster_security

    opened = getattr(args, "keys", None) or ([Path(args.key)] if getattr(args, "key", None) else [])
    new = [Path(t) for t in getattr(args, "to", []) if not t.startswith("dcrecip")]
    return DaskBackend(
        args.cluster,
        security=cluster_security(args.cluster_tls_ca, args.cluster_tls_cert, args.cluster_tls_key),
        key_paths=tuple(p.resolve() for p in [*opened, *new]),
    )
