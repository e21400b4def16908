"""CMS EnvelopedData (RFC 5652) as PS3.15 E.1.1 uses it for the Encrypted Attributes Sequence:
RSA key transport (PKCS #1 v1.5, RFC 3370) of a content key, AES-CBC (RFC 3565) or
Triple-DES-CBC content encryption.

Building uses ``cryptography``'s ``PKCS7EnvelopeBuilder``. Opening is done here, on a small
DER reader, because ``pkcs7_decrypt_der`` does not fit the standard's use:

- it needs the recipient's certificate, where PS3.15 (and ``gdcmanon --key``) needs only the
  private key;
- it refuses the even-length padding byte that DICOM adds to an odd-length OB value (GDCM
  writes such objects);
- it opens only AES; re-identifiers must also open Triple-DES (PS3.15 E.1.2).

The content is not authenticated (CBC, no MAC): the standard's choice. A wrong key shows as
bad padding or unreadable plaintext; PKCS #1 v1.5 decryption with a wrong key returns
random bytes rather than failing (implicit rejection), so the unwrapped key length is checked
too. dicomcrypt adds integrity by sealing a digest of the whole object inside its
AES-GCM pixel envelope.

Standard library and ``cryptography`` only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs7

from dicomcrypt.crypto.keys import check_permissions
from dicomcrypt.errors import IdentityFormatError, IdentityKeyError, KeyFileError

__all__ = [
    "CONTENT_CIPHERS",
    "EnvelopedData",
    "IdentityKey",
    "RecipientInfo",
    "load_certificates",
    "open_enveloped",
    "parse_enveloped",
    "seal_enveloped",
]

CONTENT_CIPHERS: dict[str, type[algorithms.AES128 | algorithms.AES256]] = {
    "aes128": algorithms.AES128,
    "aes256": algorithms.AES256,
}
"""Content ciphers we write (``cryptography`` builds AES-128/256-CBC); we read AES-192 and 3DES too."""

_OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
_OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
# content-encryption OID -> (key bytes, block bytes, cipher factory)
_CONTENT_ALGORITHMS = {
    "2.16.840.1.101.3.4.1.2": ("AES-128-CBC", 16, 16),
    "2.16.840.1.101.3.4.1.22": ("AES-192-CBC", 24, 16),
    "2.16.840.1.101.3.4.1.42": ("AES-256-CBC", 32, 16),
    "1.2.840.113549.3.7": ("DES-EDE3-CBC", 24, 8),
}
_NAME_ATTRIBUTES = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU"}


# --------------------------------------------------------------------------- building


def seal_enveloped(data: bytes, certificates: Sequence[x509.Certificate], *, cipher: str = "aes256") -> bytes:
    """EnvelopedData (DER) of ``data`` for every certificate (RSA keys only, PS3.15 E.1.1)."""
    if not certificates:
        raise ValueError("at least one recipient certificate is needed")
    if cipher not in CONTENT_CIPHERS:
        raise ValueError(f"unknown content cipher {cipher!r}; choose one of {', '.join(CONTENT_CIPHERS)}")
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(data).set_content_encryption_algorithm(CONTENT_CIPHERS[cipher])
    for certificate in certificates:
        builder = builder.add_recipient(certificate)
    return builder.encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])


def load_certificates(path: str | Path) -> list[x509.Certificate]:
    """Recipient certificates from a PEM file (one or more) or a DER file; RSA keys only."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"identity certificate {path}: cannot read ({exc.strerror})") from None
    try:
        if b"-----BEGIN" in raw:
            certificates = x509.load_pem_x509_certificates(raw)
        else:
            certificates = [x509.load_der_x509_certificate(raw)]
    except ValueError:
        raise KeyFileError(f"identity certificate {path}: not a PEM or DER X.509 certificate") from None
    for certificate in certificates:
        if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
            raise KeyFileError(
                f"identity certificate {path}: its key is not RSA; "
                "PS3.15 E.1.1 encrypts attributes with RSA key transport"
            )
    return certificates


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, repr=False)
class IdentityKey:
    """An RSA private key that opens Encrypted Attributes Sequences, and where it came from."""

    private_key: rsa.RSAPrivateKey
    source: str = ""

    @classmethod
    def load(cls, path: str | Path) -> IdentityKey:
        """Read an unencrypted PEM (PKCS #1 or PKCS #8) or DER RSA private key; warn if others can read it."""
        path = Path(path)
        try:
            raw = path.read_bytes()
            mode = path.stat().st_mode
        except OSError as exc:
            raise KeyFileError(f"identity key {path}: cannot read ({exc.strerror})") from None
        check_permissions(path, mode, "identity key")
        try:
            loader = serialization.load_pem_private_key if b"-----BEGIN" in raw else serialization.load_der_private_key
            key = loader(raw, password=None)
        except TypeError:
            raise KeyFileError(f"identity key {path}: the key is password-protected; give an unencrypted key") from None
        except (ValueError, UnsupportedAlgorithm):
            raise KeyFileError(f"identity key {path}: not a PEM or DER private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyFileError(f"identity key {path}: not an RSA key (PS3.15 E.1.1 uses RSA key transport)")
        return cls(key, str(path))

    @property
    def fingerprint(self) -> str:
        """First 16 hex digits of SHA-256 of the public key (SubjectPublicKeyInfo): not secret."""
        spki = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(spki).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"IdentityKey(fingerprint={self.fingerprint}, source={self.source!r})"

    def __reduce__(self) -> tuple[object, tuple[bytes, str]]:
        """Pickle as PKCS #8 DER, so a batch job carrying the key reaches its worker processes."""
        der = self.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return _rebuild_identity_key, (der, self.source)


def _rebuild_identity_key(der: bytes, source: str) -> IdentityKey:
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return IdentityKey(key, source)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class RecipientInfo:
    """A KeyTransRecipientInfo: who it is for, and the wrapped content key."""

    issuer: str
    serial: int | None
    subject_key_identifier: bytes | None
    key_algorithm: str
    encrypted_key: bytes

    def describe(self) -> str:
        if self.serial is not None:
            return f"issuer {self.issuer or '(empty)'}, serial {self.serial:#x}"
        return f"subject key id {(self.subject_key_identifier or b'').hex()}"


@dataclass(frozen=True)
class EnvelopedData:
    recipients: tuple[RecipientInfo, ...]
    content_algorithm: str
    iv: bytes
    encrypted_content: bytes

    def describe_recipients(self) -> str:
        return "; ".join(r.describe() for r in self.recipients) or "no key-transport recipients"


def parse_enveloped(blob: bytes) -> EnvelopedData:
    """Read a ContentInfo holding EnvelopedData (DER, or BER as older tools write it)."""
    try:
        return _parse(blob)
    except (IndexError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise IdentityFormatError(f"Encrypted Content (0400,0520) is not a CMS EnvelopedData object: {exc}") from None


def open_enveloped(blob: bytes, keys: Iterable[IdentityKey]) -> bytes:
    """The plaintext, opened with the first key that fits a recipient.

    Raises :class:`IdentityKeyError` (naming the recipients and the keys tried) when none
    does, :class:`IdentityFormatError` for a malformed object or unsupported algorithm.
    """
    data = parse_enveloped(blob)
    if data.content_algorithm not in _CONTENT_ALGORITHMS:
        raise IdentityFormatError(
            f"CMS content encryption {data.content_algorithm} is not supported (AES-CBC or 3DES-CBC)"
        )
    name, key_size, block = _CONTENT_ALGORITHMS[data.content_algorithm]
    if len(data.iv) != block or not data.encrypted_content or len(data.encrypted_content) % block:
        raise IdentityFormatError(f"CMS {name}: IV or ciphertext has the wrong size")
    keys = list(keys)
    for key in keys:
        for recipient in data.recipients:
            content_key = _unwrap(recipient, key.private_key, key_size)
            if content_key is None:
                continue
            plaintext = _decrypt_content(data, name, content_key, block)
            if plaintext is not None:
                return plaintext
    tried = ", ".join(k.fingerprint for k in keys) or "none"
    raise IdentityKeyError(
        f"the Encrypted Attributes Sequence (0400,0500) does not open with the identity key(s) given "
        f"(key fingerprints {tried}): it is encrypted for {data.describe_recipients()}, or it was altered"
    )


def _unwrap(recipient: RecipientInfo, key: rsa.RSAPrivateKey, key_size: int) -> bytes | None:
    if recipient.key_algorithm != _OID_RSA_ENCRYPTION or len(recipient.encrypted_key) != (key.key_size + 7) // 8:
        return None
    try:
        content_key = key.decrypt(recipient.encrypted_key, padding.PKCS1v15())
    except ValueError:
        return None
    # Implicit rejection: a wrong key yields random bytes, usually of another length.
    return content_key if len(content_key) == key_size else None


def _decrypt_content(data: EnvelopedData, name: str, content_key: bytes, block: int) -> bytes | None:
    if name.startswith("DES"):
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

        algorithm: CipherAlgorithm = TripleDES(content_key)
    else:
        algorithm = algorithms.AES(content_key)
    decryptor = Cipher(algorithm, modes.CBC(data.iv)).decryptor()
    padded = decryptor.update(data.encrypted_content) + decryptor.finalize()
    unpadder = block_padding.PKCS7(block * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        return None


# A minimal BER/DER reader: enough of X.690 for EnvelopedData.


def _tlv(buf: bytes, pos: int) -> tuple[int, int, int, int]:
    """(tag byte, content start, content end, next position) of the element at ``pos``.

    Indefinite lengths (BER) are resolved by walking the children to the end-of-contents.
    """
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte tags are not used by EnvelopedData")
    length = buf[pos + 1]
    start = pos + 2
    if length == 0x80:
        if not tag & 0x20:
            raise ValueError("indefinite length on a primitive element")
        cursor = start
        while buf[cursor : cursor + 2] != b"\x00\x00":
            cursor = _tlv(buf, cursor)[3]
            if cursor >= len(buf):
                raise ValueError("missing end-of-contents")
        return tag, start, cursor, cursor + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise ValueError("bad length")
        length = int.from_bytes(buf[start : start + count], "big")
        start += count
    end = start + length
    if end > len(buf):
        raise ValueError("truncated")
    return tag, start, end, end


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    pos = start
    while pos < end:
        if buf[pos : pos + 2] == b"\x00\x00":
            break
        tag, s, e, pos = _tlv(buf, pos)
        out.append((tag, s, e))
    return out


def _octets(buf: bytes, tag: int, start: int, end: int) -> bytes:
    """An OCTET STRING's bytes, primitive or constructed (BER chunks)."""
    if not tag & 0x20:
        return buf[start:end]
    return b"".join(_octets(buf, t, s, e) for t, s, e in _children(buf, start, end))


def _oid(raw: bytes) -> str:
    if not raw:
        raise ValueError("empty OID")
    first = raw[0]
    arcs = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    value = 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(str(a) for a in arcs)


def _expect(tag: int, wanted: int, what: str) -> None:
    if tag != wanted:
        raise ValueError(f"{what}: unexpected tag {tag:#04x}")


def _parse(blob: bytes) -> EnvelopedData:
    tag, start, end, after = _tlv(blob, 0)
    if blob[after:].strip(b"\x00"):  # DICOM pads an odd OB value with one NUL
        raise ValueError("data after the CMS object")
    _expect(tag, 0x30, "ContentInfo")
    content_info = _children(blob, start, end)
    if _oid(blob[content_info[0][1] : content_info[0][2]]) != _OID_ENVELOPED_DATA:
        raise ValueError("ContentInfo does not hold EnvelopedData")
    _expect(content_info[1][0], 0xA0, "ContentInfo content")
    (env_tag, env_start, env_end), = _children(blob, content_info[1][1], content_info[1][2])
    _expect(env_tag, 0x30, "EnvelopedData")
    fields = _children(blob, env_start, env_end)
    index = 1  # version
    if fields[index][0] == 0xA0:  # originatorInfo
        index += 1
    _expect(fields[index][0], 0x31, "recipientInfos")
    recipients = tuple(
        _recipient(blob, s, e) for t, s, e in _children(blob, fields[index][1], fields[index][2]) if t == 0x30
    )
    _expect(fields[index + 1][0], 0x30, "encryptedContentInfo")
    info = _children(blob, fields[index + 1][1], fields[index + 1][2])
    algorithm = _children(blob, info[1][1], info[1][2])
    algorithm_oid = _oid(blob[algorithm[0][1] : algorithm[0][2]])
    iv = _octets(blob, *algorithm[1]) if len(algorithm) > 1 and algorithm[1][0] in (0x04, 0x24) else b""
    content = b""
    if len(info) > 2:
        if info[2][0] not in (0x80, 0xA0):
            raise ValueError("encryptedContent: unexpected tag")
        content = _octets(blob, info[2][0], info[2][1], info[2][2])
    return EnvelopedData(recipients, algorithm_oid, iv, content)


def _recipient(blob: bytes, start: int, end: int) -> RecipientInfo:
    version, rid, algorithm, encrypted_key = _children(blob, start, end)[:4]
    issuer, serial, ski = "", None, None
    if rid[0] == 0x30:  # issuerAndSerialNumber
        name, number = _children(blob, rid[1], rid[2])
        issuer = _describe_name(blob, name[1], name[2])
        serial = int.from_bytes(blob[number[1] : number[2]], "big", signed=True)
    elif rid[0] in (0x80, 0xA0):  # [0] subjectKeyIdentifier
        ski = _octets(blob, *rid)
    _, oid_start, oid_end = _children(blob, algorithm[1], algorithm[2])[0]
    algorithm_oid = _oid(blob[oid_start:oid_end])
    return RecipientInfo(issuer, serial, ski, algorithm_oid, _octets(blob, *encrypted_key))


def _describe_name(blob: bytes, start: int, end: int) -> str:
    """An X.501 Name as ``CN=...,O=...`` (common attributes only; for messages)."""
    parts = []
    for _, rdn_start, rdn_end in _children(blob, start, end):
        for _, atv_start, atv_end in _children(blob, rdn_start, rdn_end):
            oid_elem, value = _children(blob, atv_start, atv_end)[:2]
            label = _NAME_ATTRIBUTES.get(_oid(blob[oid_elem[1] : oid_elem[2]]), "?")
            parts.append(f"{label}={blob[value[1] : value[2]].decode('utf-8', 'replace')}")
    return ",".join(parts)
