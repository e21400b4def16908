"""Shared fixtures for the PACS integration tests: a site key on disk, small real images.

The Orthanc process helper is ``helpers.orthanc`` (reusable by gateway tests). The fixtures
``orthanc_restore`` and ``orthanc_encrypt`` are module-scoped: one Orthanc per test module (and
per xdist worker), since Orthanc with the plugin takes a few seconds to start (torch import,
model load and warm-up). Both use the module's ``site_key``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomcrypt import Key
from helpers.orthanc import OrthancServer, start_orthanc


@pytest.fixture(scope="module")
def site_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Key, Path]:
    """A site key and its key file (mode 0600), as a site would configure it."""
    folder = tmp_path_factory.mktemp("keys")
    key = Key.generate()
    path = folder / "site.key"
    key.save(path)
    return key, path


@pytest.fixture(scope="module")
def orthanc_restore(tmp_path_factory: pytest.TempPathFactory, site_key: tuple[Key, Path]) -> Iterator[OrthancServer]:
    """Orthanc with the plugin restoring instances encrypted with ``site_key`` on ingest."""
    server = start_orthanc(
        tmp_path_factory.mktemp("orthanc-restore"),
        dicomcrypt={"Mode": "restore", "KeyFiles": [str(site_key[1])]},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def orthanc_encrypt(tmp_path_factory: pytest.TempPathFactory, site_key: tuple[Key, Path]) -> Iterator[OrthancServer]:
    """Orthanc with the plugin storing plain instances encrypted (lossless) with ``site_key``."""
    server = start_orthanc(
        tmp_path_factory.mktemp("orthanc-encrypt"),
        dicomcrypt={"Mode": "encrypt", "KeyFiles": [str(site_key[1])], "EncryptMode": "lossless"},
    )
    try:
        yield server
    finally:
        server.stop()
