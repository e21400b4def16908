"""Site keys, key files and key rings (docs/format.md, "Key file")."""

from __future__ import annotations

import base64
import logging
import os
import pickle
import re
import stat
import warnings
from pathlib import Path

import pytest

from dicomcrypt.crypto import Key, KeyRing
from dicomcrypt.errors import DecryptionError, KeyFileError, OutputExistsError

SECRET = bytes(range(32))
SECRET_B64 = base64.urlsafe_b64encode(SECRET).rstrip(b"=").decode()
POSIX = os.name == "posix"


def _write(path: Path, text: str | bytes, mode: int = 0o600) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(mode)
    return path


def test_key_id_is_16_hex_and_matches_the_vector() -> None:
    key = Key.from_bytes(SECRET)
    assert re.fullmatch(r"[0-9a-f]{16}", key.key_id)
    assert key.key_id == "ffadce7f3a781e97"  # tests/vectors/envelope.json, key 000102...1f
    assert key.key_id_bytes == bytes.fromhex(key.key_id)
    assert key._kek != SECRET and len(key._kek) == 32


def test_generate_gives_distinct_keys() -> None:
    a, b = Key.generate(), Key.generate()
    assert a != b and a.key_id != b.key_id
    assert Key.from_bytes(SECRET) == Key.from_bytes(bytearray(SECRET))
    assert len({Key.from_bytes(SECRET), Key.from_bytes(SECRET)}) == 1


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_from_bytes_needs_exactly_32_bytes(size: int) -> None:
    with pytest.raises(KeyFileError, match="32 bytes"):
        Key.from_bytes(bytes(size))


def test_repr_and_str_hide_the_key() -> None:
    key = Key.from_bytes(SECRET)
    for text in (repr(key), str(key), f"{key}", repr(KeyRing([key]))):
        assert key.key_id in text
        assert SECRET.hex() not in text and SECRET_B64 not in text and repr(SECRET) not in text


def test_wrap_unwrap() -> None:
    key, other = Key.from_bytes(SECRET), Key.generate()
    data_key = os.urandom(32)
    wrapped = key.wrap(data_key)
    assert len(wrapped) == 40 and key.unwrap(wrapped) == data_key
    with pytest.raises(DecryptionError):
        other.unwrap(wrapped)
    with pytest.raises(ValueError):
        key.wrap(bytes(16))


def test_pickles_for_worker_processes() -> None:
    key = Key.generate()
    assert pickle.loads(pickle.dumps(key)) == key


# -- key files --------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    key = Key.generate()
    path = tmp_path / "site.key"
    key.save(path)
    assert Key.load(path) == key
    lines = path.read_text().splitlines()
    encoded = base64.urlsafe_b64encode(key._secret).rstrip(b"=").decode()
    assert [line for line in lines if not line.startswith("#")] == [f"DICOMCRYPT-KEY-1 {encoded}"]
    assert f"# key id: {key.key_id}" in lines
    assert any(line.startswith("# created: ") for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.key"]  # no temp file left


@pytest.mark.skipif(not POSIX, reason="POSIX permissions")
def test_saved_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        Key.generate().save(tmp_path / "a.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.key").stat().st_mode) == 0o600


def test_save_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    first, second = Key.generate(), Key.generate()
    path = tmp_path / "site.key"
    first.save(path)
    with pytest.raises(OutputExistsError, match="force"):
        second.save(path)
    assert Key.load(path) == first
    second.save(path, force=True)
    assert Key.load(path) == second
    if POSIX:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.key"]


def test_save_into_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot create"):
        Key.generate().save(tmp_path / "missing" / "a.key")


def test_load_tolerates_comments_blank_lines_and_crlf(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.key", f"# note\r\n\r\n  DICOMCRYPT-KEY-1 {SECRET_B64}  \r\n# end\r\n")
    assert Key.load(path) == Key.from_bytes(SECRET)


@pytest.mark.skipif(not POSIX, reason="POSIX permissions")
def test_load_warns_and_logs_on_readable_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path / "a.key", f"DICOMCRYPT-KEY-1 {SECRET_B64}\n", mode=0o644)
    with caplog.at_level(logging.WARNING, logger="dicomcrypt.crypto.keys"), warnings.catch_warnings():
        warnings.simplefilter("error")  # a log line only, not a Python warning too (issue 15)
        assert Key.load(path) == Key.from_bytes(SECRET)
    assert "accessible by group or others" in caplog.text and "chmod 600" in caplog.text
    assert len(caplog.records) == 1
    _write(path, f"DICOMCRYPT-KEY-1 {SECRET_B64}\n", mode=0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Key.load(path)


NON_CANONICAL = SECRET_B64[:-1] + chr(ord(SECRET_B64[-1]) + 1)  # same bytes, nonzero spare bits


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("", id="empty"),
        pytest.param("# only a comment\n", id="comment only"),
        pytest.param(f"DICOMCRYPT-KEY-1 {SECRET_B64}\nDICOMCRYPT-KEY-1 {SECRET_B64}\n", id="two key lines"),
        pytest.param(f"DICOMCRYPT-KEY-2 {SECRET_B64}\n", id="wrong prefix"),
        pytest.param(f"{SECRET_B64}\n", id="no prefix"),
        pytest.param(f"DICOMCRYPT-KEY-1 {SECRET_B64} extra\n", id="extra word"),
        pytest.param(f"DICOMCRYPT-KEY-1 {SECRET_B64[:-1]}\n", id="42 characters"),
        pytest.param(f"DICOMCRYPT-KEY-1 {SECRET_B64}A\n", id="44 characters"),
        pytest.param(f"DICOMCRYPT-KEY-1 {SECRET_B64}=\n", id="padded"),
        pytest.param(f"DICOMCRYPT-KEY-1 {SECRET_B64[:-1]}+\n", id="standard base64 alphabet"),
        pytest.param(f"DICOMCRYPT-KEY-1 {NON_CANONICAL}\n", id="non-canonical"),
        pytest.param("DICOMCRYPT-KEY-1 " + "é" * 43 + "\n", id="not ASCII"),
        pytest.param(bytes(range(256)), id="binary"),
        pytest.param(b"x" * 70_000, id="too large"),
    ],
)
def test_malformed_key_files(tmp_path: Path, content: str | bytes) -> None:
    path = _write(tmp_path / "bad.key", content)
    with pytest.raises(KeyFileError) as info:
        Key.load(path)
    message = str(info.value)
    assert str(path) in message
    assert SECRET_B64[:20] not in message  # the file's content is never echoed
    assert "expected" in message or "not" in message


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        Key.load(tmp_path / "nope.key")
    with pytest.raises(KeyFileError, match="folder"):
        Key.load(tmp_path)


# -- key rings --------------------------------------------------------------------------------


def test_key_ring_lookups() -> None:
    a, b = Key.generate(), Key.generate()
    ring = KeyRing([a, b, a])
    assert len(ring) == 2
    assert ring.key_ids == (a.key_id, b.key_id)
    assert ring.get(a.key_id) is a and ring.get("0" * 16) is None
    assert a.key_id in ring and b in ring and "0" * 16 not in ring and Key.generate() not in ring
    assert list(ring) == [a, b]
    assert len(KeyRing()) == 0
    with pytest.raises(TypeError):
        KeyRing([SECRET])  # type: ignore[list-item]


def test_key_ring_load_files_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir()
    a, b, c = Key.generate(), Key.generate(), Key.generate()
    a.save(folder / "a.key")
    b.save(folder / "b.key")
    (folder / "notes.txt").write_text("not a key")
    c.save(tmp_path / "c.key")
    ring = KeyRing.load([tmp_path / "c.key", folder])
    assert ring.key_ids == (c.key_id, a.key_id, b.key_id)
    assert KeyRing.load(str(folder)).key_ids == (a.key_id, b.key_id)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(KeyFileError, match="no \\*.key"):
        KeyRing.load([empty])
    with pytest.raises(KeyFileError, match="not found"):
        KeyRing.load([tmp_path / "gone.key"])
