"""Receiver life cycle: stop() answers the instance in flight before closing; nothing after it."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pydicom
import pytest

from dicomcrypt import encrypt_dataset
from helpers.corpus import read_quietly, sample
from helpers.store_clients import store


@pytest.mark.slow
def test_stop_finishes_the_instance_in_flight(start_receiver, site_key):
    original = read_quietly(sample("CT_small.dcm"))  # lossless restore: tenths of a second in the handler
    sealed = encrypt_dataset(original, key=site_key, mode="lossless")
    rx = start_receiver()
    port = rx.port
    answers: list[pydicom.Dataset] = []
    sender = threading.Thread(target=lambda: answers.append(store(port, sealed)))
    sender.start()
    deadline = time.monotonic() + 30
    while not rx.studies() and time.monotonic() < deadline:  # not yet answered ...
        with rx._activity.cond:  # ... but the data is in: the instance is in flight
            if any(rx._activity.busy.values()):
                break
        time.sleep(0.005)
    assert not rx.studies(), "the instance was answered before stop() could be tested"
    rx.stop()
    sender.join(timeout=30)

    assert answers and answers[0].Status == 0x0000
    (filed,) = [p for p in rx.config.out.rglob("*.dcm")]
    np.testing.assert_array_equal(pydicom.dcmread(filed).pixel_array, original.pixel_array)
    with pytest.raises(OSError):  # no longer listening
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
