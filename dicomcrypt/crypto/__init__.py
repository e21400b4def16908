"""Keys for dicomcrypt: site keys, public-key recipients, key ids, key rings.

Standard library and ``cryptography`` only. Formats and labels: docs/format.md.
"""

from dicomcrypt.crypto.keyring import KeyRing, load_secret, parse_target
from dicomcrypt.crypto.keys import InsecureKeyFileWarning, Key
from dicomcrypt.crypto.recipients import Recipient, RecipientKey

__all__ = ["InsecureKeyFileWarning", "Key", "KeyRing", "Recipient", "RecipientKey", "load_secret", "parse_target"]
