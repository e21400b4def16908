"""dicomcrypt: encrypt DICOM pixel data with an autoencoder and AES-256-GCM.

Public API::

    from dicomcrypt import Key, KeyRing, encrypt_dataset, decrypt_dataset
    key = Key.generate()
    sealed = encrypt_dataset(ds, key=key)              # lossless by default
    restored = decrypt_dataset(sealed, keys=KeyRing([key]))

Names are loaded on first use, so ``import dicomcrypt`` stays cheap and never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "encrypt_dataset": "dicomcrypt.pipeline",
    "decrypt_dataset": "dicomcrypt.pipeline",
    "encrypt_instance": "dicomcrypt.pipeline",
    "decrypt_instance": "dicomcrypt.pipeline",
    "inspect_dataset": "dicomcrypt.pipeline",
    "rekey_instance": "dicomcrypt.pipeline",
    "Outcome": "dicomcrypt.pipeline",
    "Inspection": "dicomcrypt.pipeline",
    "Key": "dicomcrypt.crypto",
    "KeyRing": "dicomcrypt.crypto",
    "Recipient": "dicomcrypt.crypto",
    "RecipientKey": "dicomcrypt.crypto",
    "Mode": "dicomcrypt.envelope",
    "IdentityProtection": "dicomcrypt.identity_protection",
    "IdentityKey": "dicomcrypt.identity_protection",
}

__all__ = sorted(_EXPORTS) + ["__version__"]  # noqa: PLE0605 -- the lazy names are listed once, in _EXPORTS


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dicomcrypt' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
