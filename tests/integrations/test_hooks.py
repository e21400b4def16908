"""The platform-neutral storage hook: bytes in, bytes out, the library's errors, counts; and the
pynetdicom PACS example of docs/integrations.md, run for real on loopback."""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomcrypt import Key, KeyRing, decrypt_dataset, encrypt_dataset
from dicomcrypt.codec.registry import DEFAULT_MODELS
from dicomcrypt.errors import ConfigError
from dicomcrypt.dicom import read_private_block
from dicomcrypt.dicom.private_block import PRIVATE_CREATOR, PRIVATE_GROUP
from dicomcrypt.errors import (
    DecryptionError,
    InvalidInputError,
    KeyNotFoundError,
    ModelError,
    NotDicomError,
)
from dicomcrypt.integrations.hooks import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_KEY_NOT_FOUND,
    STATUS_MODEL_UNAVAILABLE,
    STATUS_VERIFICATION_FAILED,
    StorageHook,
    failure_status,
)
from helpers.corpus import fresh_copy, read_quietly, sample, to_bytes
from helpers.orthanc import free_port

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate()


@pytest.fixture(scope="module")
def restore_hook(key: Key) -> StorageHook:
    return StorageHook("restore", keys=key)


def sealed_bytes(ds: pydicom.Dataset, key: Key, mode: str = "standard") -> bytes:
    return to_bytes(encrypt_dataset(ds, key=key, mode=mode))


def tamper(data: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    envelope = bytearray(block[0x10].value)
    envelope[-20] ^= 0x01
    block[0x10].value = bytes(envelope)
    return to_bytes(ds)


@pytest.mark.parametrize("mode", ["lossless", "lossy", "standard"])
def test_encrypt_then_restore_through_hooks(key: Key, restore_hook: StorageHook, mode: str) -> None:
    original = fresh_copy("CT_small.dcm")
    data = to_bytes(original)
    encrypt_hook = StorageHook("encrypt", keys=[key], encrypt_mode=mode, preload=False)
    sealed = encrypt_hook.process(data)
    assert sealed.action == "encrypted" and sealed.mode == mode and sealed.changed
    assert read_private_block(pydicom.dcmread(io.BytesIO(sealed.data))) is not None
    assert data == to_bytes(original)  # input untouched

    restored = restore_hook.process(sealed.data)
    assert restored.action == "decrypted" and restored.mode == mode
    back = pydicom.dcmread(io.BytesIO(restored.data))
    if mode == "lossy":
        assert back.SOPInstanceUID == restored.sop_instance_uid != original.SOPInstanceUID
        assert back.LossyImageCompression == "01"
    else:
        assert restored.sop_instance_uid == original.SOPInstanceUID
        np.testing.assert_array_equal(back.pixel_array, original.pixel_array)


def test_restore_passes_plain_instances_through_as_the_same_bytes(restore_hook: StorageHook) -> None:
    data = to_bytes(fresh_copy("MR_small.dcm"))
    result = restore_hook.process(data)
    assert result.action == "passed through" and not result.changed
    assert result.data is data


def test_encrypt_passes_non_images_and_encrypted_instances_through(key: Key) -> None:
    hook = StorageHook("encrypt", keys=key, encrypt_mode="standard")
    report = to_bytes(read_quietly(sample("test-SR.dcm")))
    assert hook.process(report).data is report
    sealed = sealed_bytes(fresh_copy("MR_small.dcm"), Key.generate())
    result = hook.process(sealed)
    assert result.action == "passed through" and result.data is sealed
    assert "already encrypted" in result.note


def test_refusals_raise_the_library_errors_and_map_to_statuses(key: Key, restore_hook: StorageHook) -> None:
    before = restore_hook.counts
    with pytest.raises(DecryptionError) as failure:
        restore_hook.process(tamper(sealed_bytes(fresh_copy("MR_small.dcm"), key)))
    assert failure_status(failure.value) == STATUS_VERIFICATION_FAILED
    other = Key.generate()
    with pytest.raises(KeyNotFoundError, match=other.key_id) as missing:
        restore_hook.process(sealed_bytes(fresh_copy("MR_small.dcm"), other))
    assert failure_status(missing.value) == STATUS_KEY_NOT_FOUND
    with pytest.raises(NotDicomError, match="instance: not a DICOM file"):
        restore_hook.process(b"not dicom at all")
    assert failure_status(NotDicomError("x")) == STATUS_CANNOT_UNDERSTAND
    assert failure_status(ModelError("x")) == STATUS_MODEL_UNAVAILABLE
    assert restore_hook.counts.refused == before.refused + 3


def test_encrypt_refuses_an_image_without_pixel_data(key: Key) -> None:
    ds = fresh_copy("CT_small.dcm")
    del ds.PixelData
    with pytest.raises(InvalidInputError, match="has no Pixel Data"):
        StorageHook("encrypt", keys=key, encrypt_mode="standard").process(to_bytes(ds))


def test_bad_settings_are_refused_at_construction(key: Key, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mode 'decrypt'"):
        StorageHook("decrypt", keys=key)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="encrypt mode 'fast'"):
        StorageHook("encrypt", keys=key, encrypt_mode="fast")
    with pytest.raises(KeyNotFoundError, match="0000000000000000"):
        StorageHook("encrypt", keys=key, encrypt_key_id="0000000000000000", preload=False)
    with pytest.raises(ModelError, match="unknown model"):
        StorageHook("encrypt", keys=key, model="nope@1")
    from dicomcrypt.errors import KeyFileError

    with pytest.raises(KeyFileError, match="missing.key"):
        StorageHook("restore", keys=tmp_path / "missing.key")


def test_the_encrypt_effort_trades_bytes_for_time_and_both_restore_exactly(key: Key) -> None:
    original = to_bytes(fresh_copy("CT_small.dcm"))
    sizes = {}
    for effort in ("fast", "smallest"):
        sealed = StorageHook("encrypt", keys=key, effort=effort).process(original).data
        sizes[effort] = len(sealed)
        restored = pydicom.dcmread(io.BytesIO(StorageHook("restore", keys=key).process(sealed).data))
        np.testing.assert_array_equal(restored.pixel_array, pydicom.dcmread(io.BytesIO(original)).pixel_array)
    assert sizes["smallest"] <= sizes["fast"]
    with pytest.raises(InvalidInputError, match="unknown effort 'max'"):
        StorageHook("encrypt", keys=key, effort="max")


def test_the_encrypt_key_is_the_one_named(key: Key) -> None:
    second = Key.generate()
    hook = StorageHook("encrypt", keys=[key, second], encrypt_key_id=second.key_id, encrypt_mode="standard")
    sealed = pydicom.dcmread(io.BytesIO(hook.process(to_bytes(fresh_copy("MR_small.dcm"))).data))
    assert read_private_block(sealed).key_ids == (second.key_id,)
    assert hook.status()["encrypt_key_id"] == second.key_id


def test_encrypt_also_seals_for_recipients_checked_once(key: Key) -> None:
    from dicomcrypt.crypto import RecipientKey

    private = RecipientKey.generate()
    hook = StorageHook("encrypt", keys=key, recipients=[str(private.recipient)], encrypt_mode="standard",
                       preload=False)
    sealed = pydicom.dcmread(io.BytesIO(hook.process(to_bytes(fresh_copy("MR_small.dcm"))).data))
    assert read_private_block(sealed).key_ids == (key.key_id, private.recipient.key_id)
    assert decrypt_dataset(sealed, keys=private).SOPInstanceUID == sealed.SOPInstanceUID
    with pytest.raises(InvalidInputError, match="twice"):
        StorageHook("encrypt", keys=key, recipients=[private.recipient, private.recipient], preload=False)
    with pytest.raises(ConfigError, match="recipients are for encrypt mode"):
        StorageHook("restore", keys=key, recipients=[private.recipient], preload=False)


def test_restore_stores_deflated_instances_undeflated(key: Key, restore_hook: StorageHook) -> None:
    """The hook decides as `serve` does (dicomcrypt.receive), normalising the encoding too."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

    original = fresh_copy("image_dfl.dcm")
    assert original.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    restored = pydicom.dcmread(io.BytesIO(restore_hook.process(sealed_bytes(original, key)).data))
    assert restored.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(restored.pixel_array, original.pixel_array)


def test_counts_add_up_under_concurrent_calls(key: Key) -> None:
    hook = StorageHook("restore", keys=key)
    good = [sealed_bytes(fresh_copy("MR_small.dcm"), key) for _ in range(12)]
    bad = [tamper(sealed_bytes(fresh_copy("MR_small.dcm"), key)) for _ in range(4)]
    plain = [to_bytes(fresh_copy("MR_small.dcm")) for _ in range(4)]

    def run(data: bytes) -> str:
        try:
            return hook.process(data).action
        except DecryptionError:
            return "refused"

    with ThreadPoolExecutor(max_workers=4) as pool:
        actions = list(pool.map(run, good + bad + plain))
    assert actions == ["decrypted"] * 12 + ["refused"] * 4 + ["passed through"] * 4
    counts = hook.status()["counts"]
    assert counts == {**counts, "handled": 16, "decrypted": 12, "refused": 4, "passed_through": 4}
    assert counts["mean_seconds"] > 0


def test_status_shows_key_ids_but_no_key_material() -> None:
    import base64

    secret = bytes(range(32))
    key = Key.from_bytes(secret)
    text = repr(StorageHook("restore", keys=key, preload=False).status())
    assert key.key_id in text
    for spelling in (secret.hex(), base64.urlsafe_b64encode(secret).decode().rstrip("="), repr(secret)):
        assert spelling not in text


# -- the docs example: a pynetdicom PACS calling the hook ----------------------------------


def docs_example() -> str:
    text = (DOCS / "integrations.md").read_text()
    found = re.search(r"<!-- example: pynetdicom-pacs -->\n```python\n(.*?)```\n<!-- end example -->", text, re.S)
    assert found, "docs/integrations.md lost its pynetdicom example"
    return found.group(1)


def test_the_documented_pynetdicom_pacs_restores_refuses_and_archives(tmp_path: Path) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, MRImageStorage

    key = Key.generate()
    keys = tmp_path / "keys"
    keys.mkdir()
    key.save(keys / "site.key")
    archive = tmp_path / "archive"
    archive.mkdir()
    namespace: dict[str, object] = {}
    exec(compile(docs_example(), "docs/integrations.md", "exec"), namespace)  # noqa: S102
    port = free_port()
    server = namespace["start_pacs"](str(keys), archive, host="127.0.0.1", port=port, block=False)  # type: ignore[operator]
    try:
        ct = fresh_copy("CT_small.dcm")
        lossless = encrypt_dataset(ct, key=key, mode="lossless")
        broken = pydicom.dcmread(io.BytesIO(tamper(sealed_bytes(fresh_copy("MR_small.dcm"), key))))
        plain = fresh_copy("MR_small.dcm")

        scu = AE(ae_title="SENDER")
        scu.add_requested_context(CTImageStorage)
        scu.add_requested_context(MRImageStorage)
        assoc = scu.associate("127.0.0.1", port, ae_title="PACS")
        assert assoc.is_established
        try:
            statuses = [assoc.send_c_store(ds).Status for ds in (lossless, broken, plain)]
        finally:
            assoc.release()
    finally:
        server.shutdown()

    assert statuses == [0x0000, STATUS_VERIFICATION_FAILED, 0x0000]
    stored = {p.name for p in archive.iterdir()}
    assert stored == {f"{ct.SOPInstanceUID}.dcm", f"{plain.SOPInstanceUID}.dcm"}
    restored = pydicom.dcmread(archive / f"{ct.SOPInstanceUID}.dcm")
    assert read_private_block(restored) is None
    np.testing.assert_array_equal(restored.pixel_array, ct.pixel_array)
    assert restored.PatientName == ct.PatientName
    np.testing.assert_array_equal(
        pydicom.dcmread(archive / f"{plain.SOPInstanceUID}.dcm").pixel_array, plain.pixel_array
    )
    assert decrypt_dataset(lossless, keys=KeyRing([key])).SOPInstanceUID == ct.SOPInstanceUID


@pytest.mark.slow
def test_models_load_in_the_constructor_and_never_per_instance(key: Key) -> None:
    """The second hook, and every instance after construction, reuse the process's models."""
    from dicomcrypt.codec import registry

    StorageHook("restore", keys=key)  # the shipped models are loaded by now
    loads_before = registry._load.cache_info().misses  # noqa: SLF001 - the cache is the contract
    encrypt_hook = StorageHook("encrypt", keys=key, encrypt_mode="lossless")
    restore_hook = StorageHook("restore", keys=key)
    for name in ("CT_small.dcm", "SC_rgb.dcm"):
        restore_hook.process(encrypt_hook.process(to_bytes(fresh_copy(name))).data)
    assert registry._load.cache_info().misses == loads_before  # noqa: SLF001
    assert restore_hook.status()["models_loaded"] == [DEFAULT_MODELS[1], DEFAULT_MODELS[3]]


def test_importing_the_orthanc_plugin_loads_no_pixel_codec() -> None:
    """Inside Orthanc, pyjpegls must be loaded by ``load_charls_isolated`` (RTLD_DEEPBIND) before
    anything imports it: an import through pydicom first binds it to Orthanc's own CharLS, and
    Orthanc crashes at start-up (SIGSEGV). So the plugin and the hook API import pydicom lazily."""
    import subprocess
    import sys

    code = ("import sys, dicomcrypt.integrations.orthanc_plugin; "
            "print(sorted(m for m in ('jpeg_ls', 'pydicom', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
