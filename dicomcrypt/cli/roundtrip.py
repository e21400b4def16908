"""``dicomcrypt roundtrip``: encrypt, restore and compare, with a per-file report.

The demo and an acceptance check: it proves on a site's own files that lossless restores every
pixel and shows what lossy costs (PSNR over the image's range, SSIM, CT brain-window error).
Nothing is kept on disk; a throwaway key is generated unless ``--key`` is given.

With --network the files travel over DICOM: a receiving node (the one behind 'dicomcrypt
serve') starts on a free loopback port, 'dicomcrypt send' encrypts every file on the fly and
sends it, the receiver verifies, restores and files each instance in a temporary folder, and
what it filed is compared with the original. Then "enc s" is the sender's encryption time and
"rest s" the C-STORE round trip (network + decryption + decoding + write: the receiver answers
only once the instance is on disk).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dicomcrypt.cli._common import EXIT_CODES_EPILOG, EXIT_OK, EXIT_SOME_FAILED, error, whole_number

MODES = ("lossless", "lossy", "standard")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "roundtrip",
        help="encrypt + restore + compare a file or folder, report per file (writes nothing)",
        description=__doc__,
        epilog=EXIT_CODES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", type=Path, metavar="IN", help="DICOM file or folder (recursive)")
    parser.add_argument("--key", type=Path, help="key file (default: a throwaway key)")
    parser.add_argument(
        "--mode",
        action="append",
        choices=MODES,
        help="mode to try; repeat for several (default: lossless and lossy)",
    )
    parser.add_argument("--network", action="store_true",
                        help="send to a receiving node on loopback (DICOM C-STORE) instead of in-process")
    parser.add_argument("--jobs", "-j", type=whole_number(1), default=None, metavar="N",
                        help="with --network: processes encrypting ahead of the sender (default: all CPUs)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dicomcrypt import roundtrip
    from dicomcrypt.crypto import Key
    from dicomcrypt.errors import DicomCryptError

    if not args.input.exists():
        return error(f"input {args.input} does not exist")
    try:
        key = Key.load(args.key) if args.key else Key.generate()
    except DicomCryptError as exc:
        return error(str(exc))
    modes = args.mode or ["lossless", "lossy"]
    if args.network:
        from dicomcrypt.runner.worker import usable_cpus
        from dicomcrypt.net import loopback

        rows_iter = loopback.run(args.input, key=key, modes=modes, workers=args.jobs or usable_cpus())
        how = "over DICOM on loopback (send -> serve; rows appear once each mode's files are all sent)"
    else:
        rows_iter = roundtrip.run(args.input, key=key, modes=modes)
        how = "in-process"
    print(f"key id {key.key_id}; modes {', '.join(modes)}; {how}; PSNR over each image's own value range")
    print(roundtrip.HEADER)
    started = time.perf_counter()
    rows = []
    try:
        for row in rows_iter:
            rows.append(row)
            print(roundtrip.format_row(row), flush=True)
    except DicomCryptError as exc:  # --network: the loopback receiver could not be reached
        return error(str(exc))
    failed = [r for r in rows if not r.ok]
    exact = sum(1 for r in rows if r.quality is not None and r.quality.exact)
    lossy = [r.quality for r in rows if r.mode == "lossy" and r.quality is not None]
    passed = sum(1 for r in rows if r.action == "passed through")
    skipped = sum(1 for r in rows if r.action == "skipped")
    print(
        f"\n{len(rows)} round trips in {time.perf_counter() - started:.1f} s: {exact} exact, "
        f"{len(lossy)} lossy, {passed} passed through, {skipped} skipped, {len(failed)} failed",
        file=sys.stdout,
    )
    if lossy:
        ssims = sorted(q.ssim for q in lossy)
        psnrs = sorted(q.psnr_db for q in lossy)
        print(f"lossy: SSIM min {ssims[0]:.4f} median {ssims[len(ssims) // 2]:.4f}; "
              f"PSNR min {psnrs[0]:.1f} dB median {psnrs[len(psnrs) // 2]:.1f} dB")
    return EXIT_SOME_FAILED if failed else EXIT_OK
