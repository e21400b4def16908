"""Peer addresses as users write them: ``AET@host:port``.

One parser for ``send``, ``echo`` and the gateway's ``--forward``, so every command accepts and
rejects the same strings with the same message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dicomcrypt.errors import PeerAddressError

# PS3.5 6.2: AE Title is up to 16 characters of the default repertoire, no backslash or control
# characters; leading/trailing spaces are not significant.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


@dataclass(frozen=True)
class Peer:
    """A remote Application Entity: its AE title and where it listens."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


def validate_ae_title(title: str, *, what: str = "AE title") -> str:
    """Return ``title`` stripped of padding spaces, or raise naming what was wrong."""
    stripped = title.strip()
    if not stripped or not _AE_TITLE.match(stripped):
        raise PeerAddressError(
            f"{what} {title!r} is not a valid AE title (1-16 printable ASCII characters, no backslash)"
        )
    return stripped


def parse_peer(text: str) -> Peer:
    """Parse ``AET@host:port`` (IPv6 hosts in brackets: ``AET@[::1]:104``)."""
    expected = f"peer {text!r} must be written AET@host:port, for example PACS@10.0.0.5:104"
    ae_title, at, rest = text.rpartition("@")
    if not at or not ae_title:
        raise PeerAddressError(expected)
    if rest.startswith("["):
        host, bracket, port_text = rest[1:].partition("]")
        if not bracket or not port_text.startswith(":"):
            raise PeerAddressError(expected)
        port_text = port_text[1:]
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            raise PeerAddressError(expected)
    if not host:
        raise PeerAddressError(expected)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise PeerAddressError(f"peer {text!r}: port {port_text!r} is not a number from 1 to 65535")
    return Peer(validate_ae_title(ae_title, what=f"peer {text!r}: AE title"), host, int(port_text))
