"""Keys for dicomcrypt: site keys, key ids, key rings (standard library and ``cryptography`` only).

Public-key recipients (HPKE, X25519) will live here too; see docs/format.md for the labels.
"""

from dicomcrypt.crypto.keys import InsecureKeyFileWarning, Key, KeyRing

__all__ = ["InsecureKeyFileWarning", "Key", "KeyRing"]
