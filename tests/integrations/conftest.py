"""Shared fixtures for the PACS integration tests: a site key on disk, small real images.

The Orthanc process helper is ``helpers.orthanc`` (reusable by gateway tests); each test module
starts its own Orthanc once (module-scoped fixture), since Orthanc with the plugin takes a few
seconds to start (torch import and model warm-up).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomcrypt import Key


@pytest.fixture(scope="module")
def site_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Key, Path]:
    """A site key and its key file (mode 0600), as a site would configure it."""
    folder = tmp_path_factory.mktemp("keys")
    key = Key.generate()
    path = folder / "site.key"
    key.save(path)
    return key, path
