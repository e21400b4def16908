"""Run one bomb of issue 12 under a memory limit and report what happened, as one JSON line.

    PYTHONPATH=$PWD:tests python tests/fuzz/bombs.py NAME [HEADROOM_MIB]

The crafted instance is built first (that needs the model and torch loaded); then the address
space is capped at what the process uses plus HEADROOM_MIB (default 1536) with
``RLIMIT_AS``, so a regression fails fast with MemoryError instead of taking the machine down,
and ``decrypt_instance`` runs. Prints ``{"bomb", "outcome", "error", "message", "seconds",
"peak_rss_mib", "baseline_rss_mib"}``. Runs against any checkout whose ``dicomcrypt`` is on
the path (how the numbers before the fix were measured).
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def main(name: str, headroom_mib: int = 1536) -> None:
    from helpers.crafted import BOMBS, KEY

    from dicomcrypt.pipeline import decrypt_instance

    ds = BOMBS[name]()
    baseline_rss = _vm_kib("VmRSS") / 1024
    limit = _vm_kib("VmSize") * 1024 + headroom_mib * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    started = time.perf_counter()
    outcome, error, message = "restored", "", ""
    try:
        decrypt_instance(ds, keys=KEY)
    except BaseException as exc:  # noqa: BLE001 - reported, whatever it is
        outcome, error, message = "refused", type(exc).__name__, str(exc)[:300]
    seconds = time.perf_counter() - started
    peak = _vm_kib("VmHWM") / 1024  # this process's own high-water mark (ru_maxrss inherits the parent's)
    print(json.dumps({
        "bomb": name, "outcome": outcome, "error": error, "message": message, "seconds": round(seconds, 3),
        "peak_rss_mib": round(peak), "baseline_rss_mib": round(baseline_rss),
    }))


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:3]))
