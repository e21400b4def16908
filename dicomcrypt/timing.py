"""Wall-clock timing of the steps of a recipe, recorded by name into a metrics dict."""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager


@contextmanager
def timed(metrics: MutableMapping[str, float], name: str) -> Iterator[None]:
    """Record the seconds the ``with`` block took as ``metrics[name]``, if it completes.

    A failed step records nothing: its time would describe no result.
    """
    started = time.perf_counter()
    yield
    metrics[name] = time.perf_counter() - started
