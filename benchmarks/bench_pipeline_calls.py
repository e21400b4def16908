"""Per-call time of ``encrypt_instance`` and ``decrypt_instance``: the pipeline's fixed costs (issue 14).

Not a test. For each file and mode: the fastest and the median of --repeat calls after a warm-up,
in-process on one data set (no DICOM encode/decode around the call), and the cost of the copy each
call starts from (``copy.deepcopy`` against :func:`dicomcrypt.dicom.independent_copy`, on the data
set as read and with every element decoded, as a receiver may hand it over). The codec's share is
what ``bench_codec.py`` reports; the rest is what this script is for.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_pipeline_calls.py [--repeat 40] [--profile] [FILE ...]
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from dicomcrypt.crypto import Key
from dicomcrypt.dicom import independent_copy
from dicomcrypt.pipeline import EncryptionSettings, decrypt_instance, encrypt_instance

DEFAULT_FILES = ["CT_small.dcm", "693_UNCR.dcm"]


def timings_ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(fastest, median) in ms after three warm-up calls: on a shared machine the fastest is the
    figure least touched by other load."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times) * 1e3, statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES, help="paths, or pydicom test file names")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each call as well")
    args = parser.parse_args()
    key = Key.generate()
    for name in args.files:
        path = Path(name) if Path(name).exists() else Path(get_testdata_file(name))
        ds = pydicom.dcmread(path)
        decoded = pydicom.dcmread(path)
        for _ in decoded.iterall():
            pass
        for label, source in (("as read", ds), ("decoded", decoded)):
            deep = timings_ms(lambda: copy.deepcopy(source), args.repeat)
            ours = timings_ms(lambda: independent_copy(source), args.repeat)
            print(f"{path.name} copy ({label}): deepcopy {deep[0]:.2f} ms, independent_copy {ours[0]:.2f} ms")
        for mode in ("standard", "lossless"):
            settings = EncryptionSettings.build(key=key, mode=mode)
            sealed = encrypt_instance(ds, settings).dataset
            calls = {
                "encrypt": lambda: encrypt_instance(ds, settings),
                "decrypt": lambda: decrypt_instance(sealed, keys=key),
            }
            for call, fn in calls.items():
                best, median = timings_ms(fn, args.repeat)
                print(f"{path.name} {mode} {call}: best {best:.2f} ms, median {median:.2f} ms")
                if args.profile:
                    profile = cProfile.Profile()
                    profile.runcall(lambda: [fn() for _ in range(args.repeat)])
                    pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
