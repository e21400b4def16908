"""The DICOMCRYPT 1 private block: found by creator, round trips, dictionaries for DCMTK/Orthanc."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import private_dictionary_description
from pydicom.dataset import Dataset

from dicomcrypt.dicom import (
    PRIVATE_CREATOR,
    PRIVATE_GROUP,
    PrivateInfo,
    read_private_block,
    remove_private_block,
    write_private_block,
)
from dicomcrypt.dicom.private_block import PRIVATE_ENTRIES
from dicomcrypt.errors import EnvelopeFormatError
from helpers.corpus import sample
from helpers.dciodvfy import require_tool

DOCS = Path(__file__).resolve().parents[2] / "docs"
INFO = PrivateInfo(
    format_version=1,
    mode="LOSSLESS",
    key_ids=("0123456789abcdef", "fedcba9876543210"),
    model_id="paper-grey@1",
    envelope=b"DCEV\x01\x01\x01" + bytes(range(256)),  # 263 bytes: odd on purpose
)


def _reload(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def _crowded() -> Dataset:
    """CT_small already has GEMS_PATI_01 at (0011,0010); add one more vendor block."""
    ds = pydicom.dcmread(sample("CT_small.dcm"))
    assert ds[0x00110010].value == "GEMS_PATI_01"
    ds.private_block(0x0011, "OTHER VENDOR 2", create=True).add_new(0x01, "LO", "not ours")
    return ds


def test_found_by_creator_when_the_first_slots_are_taken() -> None:
    ds = _crowded()
    write_private_block(ds, INFO)
    creators = {ds[t].value: t for t in ds.keys() if t.group == 0x0011 and t.element <= 0xFF}
    slot = creators[PRIVATE_CREATOR].element
    assert slot not in (0x10, 0x11)  # pushed past both vendor blocks
    assert ds[(0x0011 << 16) | (slot << 8) | 0x02].value == "LOSSLESS"
    assert ds[0x00111101].value == "not ours"  # the other blocks are untouched
    loaded = _reload(ds)
    assert read_private_block(loaded) == INFO


def test_round_trip_exact_envelope_despite_padding() -> None:
    ds = _reload(_with_block(pydicom.dcmread(sample("MR_small.dcm"))))
    stored = ds.private_block(0x0011, PRIVATE_CREATOR)[0x10].value
    assert len(stored) == len(INFO.envelope) + 1  # DICOM padded the odd length
    assert read_private_block(ds) == INFO


def _with_block(ds: Dataset, info: PrivateInfo = INFO) -> Dataset:
    write_private_block(ds, info)
    return ds


def test_single_key_and_no_model() -> None:
    info = PrivateInfo(1, "STANDARD", ("0123456789abcdef",), None, b"\x00\x01")
    ds = _reload(_with_block(pydicom.dcmread(sample("MR_small.dcm")), info))
    assert read_private_block(ds) == info
    assert 0x04 not in ds.private_block(0x0011, PRIVATE_CREATOR)


def test_absent_block_reads_none() -> None:
    assert read_private_block(pydicom.dcmread(sample("CT_small.dcm"))) is None


def test_write_replaces_and_remove_removes() -> None:
    ds = _crowded()
    before = set(ds.keys())
    write_private_block(ds, INFO)
    write_private_block(ds, PrivateInfo(1, "LOSSY", ("0123456789abcdef",), "m@1", b"xy"))
    assert read_private_block(ds).mode == "LOSSY"  # type: ignore[union-attr]
    assert sum(1 for t in ds.keys() if t.group == 0x0011 and ds[t].value == PRIVATE_CREATOR) == 1
    assert remove_private_block(ds)
    assert set(ds.keys()) == before
    assert not remove_private_block(ds)


def test_readable_names_in_pydicom() -> None:
    ds = _with_block(pydicom.dcmread(sample("MR_small.dcm")))
    block = ds.private_block(0x0011, PRIVATE_CREATOR)
    assert block[0x02].name == "[DicomCryptMode]"
    assert private_dictionary_description(block.get_tag(0x10), PRIVATE_CREATOR) == "DicomCryptEnvelope"


def test_implicit_vr_file_reads_back_with_dictionary_vrs() -> None:
    ds = _with_block(pydicom.dcmread(sample("MR_small_implicit.dcm")))
    loaded = _reload(ds)
    assert loaded.file_meta.TransferSyntaxUID.is_implicit_VR
    assert read_private_block(loaded) == INFO


@pytest.mark.parametrize(
    "damage",
    ["no envelope", "bad mode", "no key id", "length mismatch"],
)
def test_malformed_block(damage: str) -> None:
    ds = _with_block(pydicom.dcmread(sample("MR_small.dcm")))
    block = ds.private_block(0x0011, PRIVATE_CREATOR)
    if damage == "no envelope":
        del ds[block.get_tag(0x10)]
    elif damage == "bad mode":
        block[0x02].value = "FAST"
    elif damage == "no key id":
        del ds[block.get_tag(0x03)]
    else:
        block[0x05].value = 5
    with pytest.raises(EnvelopeFormatError):
        read_private_block(ds)


@pytest.mark.parametrize(
    "bad",
    [
        {"mode": "FAST"},
        {"key_ids": ()},
        {"key_ids": ("a\\b",)},
        {"model_id": "x" * 65},
        {"format_version": 70000},
    ],
)
def test_private_info_refuses_unstorable_values(bad: dict) -> None:
    values = dict(format_version=1, mode="LOSSY", key_ids=("k",), model_id="m", envelope=b"")
    values.update(bad)
    with pytest.raises(ValueError):
        PrivateInfo(**values)


def test_dcmdump_names_our_elements_with_the_shipped_dictionary(tmp_path: Path) -> None:
    exe = require_tool("dcmdump")
    ds = _crowded()
    write_private_block(ds, INFO)
    path = tmp_path / "encrypted.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    default = subprocess.run([exe, str(path)], capture_output=True, text=True, errors="replace")
    dictionaries = _dcmtk_dictionaries() + [str(DOCS / "dicom" / "dicomcrypt.dic")]
    env = {**os.environ, "DCMDICTPATH": os.pathsep.join(dictionaries)}
    named = subprocess.run(
        [exe, str(path)], capture_output=True, text=True, errors="replace", env=env
    )
    assert named.returncode == 0, named.stderr
    assert "dictionary" not in named.stderr.lower(), named.stderr
    for _, _, _, name in PRIVATE_ENTRIES:
        assert name in named.stdout, name
        assert name not in default.stdout
    assert "[LOSSLESS]" in named.stdout and "0123456789abcdef\\fedcba9876543210" in named.stdout

    # dcmdump +P (search) by tag: the block sits wherever the creator landed.
    mode_tag = ds.private_block(0x0011, PRIVATE_CREATOR).get_tag(0x02)
    searched = subprocess.run(
        [exe, "+P", f"{mode_tag.group:04x},{mode_tag.element:04x}", str(path)],
        capture_output=True, text=True, errors="replace", env=env,
    )
    assert searched.stdout.split()[-1] == "DicomCryptMode", searched.stdout
    assert "[LOSSLESS]" in searched.stdout


def _dcmtk_dictionaries() -> list[str]:
    """DCMTK's own dicom.dic (DCMDICTPATH replaces the default list, so it must be named)."""
    found = sorted(Path("/usr/share").glob("libdcmtk*/dicom.dic")) + sorted(
        Path("/usr/local/share").glob("dcmtk*/dicom.dic")
    )
    if not found:
        pytest.skip("DCMTK's dicom.dic not found") if not os.environ.get("CI") else pytest.fail(
            "DCMTK's dicom.dic not found"
        )
    return [str(found[-1])]


def test_dcmtk_dictionary_file_matches_the_code() -> None:
    lines = [
        line
        for line in (DOCS / "dicom" / "dicomcrypt.dic").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    expected = [
        f'(0011,"{PRIVATE_CREATOR}",{offset:02x})\t{vr}\t{name}\t{vm}\tPrivateTag'
        for offset, vr, vm, name in PRIVATE_ENTRIES
    ]
    assert lines == expected


def test_orthanc_dictionary_matches_the_code() -> None:
    from dicomcrypt.integrations.orthanc_config import orthanc_dictionary

    snippet = json.loads((DOCS / "dicom" / "orthanc-dictionary.json").read_text())["Dictionary"]
    assert snippet == orthanc_dictionary()
    # An entry for the creator element (0011,0010) would collide with (0011,1010) in DCMTK's
    # private dictionary and Orthanc would refuse to start (tests/integrations prove it starts).
    assert "0011,0010" not in snippet
    for offset, vr, vm, name in PRIVATE_ENTRIES:
        entry = snippet[f"0011,10{offset:02x}"]
        assert entry[:2] == [vr, name] and entry[4] == PRIVATE_CREATOR
        assert entry[3] == (0 if vm.endswith("n") else int(vm))


def test_private_block_doc_lists_every_element() -> None:
    text = (DOCS / "private-block.md").read_text()
    for offset, vr, vm, name in PRIVATE_ENTRIES:
        assert f"| {offset:02x} | {vr} | {vm} | {name} |" in text


@pytest.mark.parametrize("creators", [(), ("OTHER",), ("OTHER", "DICOMCRYPT 1"), ("DICOMCRYPT 1",)])
def test_our_block_is_the_block_pydicom_finds_or_creates(creators):
    """The fast path for a group without creators (issue 14) gives pydicom's block, slot and cache."""
    from dicomcrypt.dicom.private_block import _our_block

    def with_creators() -> Dataset:
        ds = Dataset()
        ds.PatientID = "X"
        for slot, creator in zip((0x12, 0x14), creators):
            ds.add_new((PRIVATE_GROUP << 16) | slot, "LO", creator)
        return ds

    for create in (False, True):
        ours, theirs = with_creators(), with_creators()
        try:
            expected = theirs.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=create).block_start
        except KeyError:
            with pytest.raises(KeyError):
                _our_block(ours, create=create)
            continue
        block = _our_block(ours, create=create)
        assert block.block_start == expected and block.dataset is ours
        assert ours == theirs and ours.private_block(PRIVATE_GROUP, PRIVATE_CREATOR) is block
