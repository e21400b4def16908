"""Each bomb of issue 12, run in a subprocess under a memory limit: refused quickly, little memory.

The hostile decryption runs in its own process with ``RLIMIT_AS`` at what the process uses
plus 1.5 GiB (tests/fuzz/bombs.py), so a regression fails fast with a MemoryError instead of
taking the machine down. Each must be refused with PayloadFormatError (0xC003), in well under a
second of decoding, without growing the process by more than a few tens of MiB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BOMBS = Path(__file__).with_name("bombs.py")
TESTS = Path(__file__).parents[1]

# Standard-mode bombs need no model (quick); the others load torch and the model.
CASES = [
    pytest.param("huge-shape", id="huge-shape"),
    pytest.param("jpeg-ls-height", id="jpeg-ls-height"),
    pytest.param("zstd-bomb", id="zstd-bomb"),
    pytest.param("latent-near-max", marks=pytest.mark.slow, id="latent-near-max"),
    pytest.param("many-frames-lossy", marks=pytest.mark.slow, id="many-frames-lossy"),
    pytest.param("many-frames-lossy-mismatch", marks=pytest.mark.slow, id="many-frames-lossy-mismatch"),
]


def run_bomb(name: str) -> dict[str, object]:
    """The JSON line tests/fuzz/bombs.py prints for ``name``."""
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, str(BOMBS), name, "1536"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", CASES)
def test_a_bomb_is_refused_before_it_allocates(name: str) -> None:
    result = run_bomb(name)
    assert (result["outcome"], result["error"]) == ("refused", "PayloadFormatError"), result
    assert float(result["seconds"]) < 1.0, result  # type: ignore[arg-type]
    assert int(result["peak_rss_mib"]) - int(result["baseline_rss_mib"]) < 64, result  # type: ignore[call-overload]
