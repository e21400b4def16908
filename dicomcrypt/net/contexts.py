"""Presentation contexts for a C-STORE association, proposed from the instances to send.

Each SOP class gets one context per transfer syntax its files are in (so a JPEG 2000 file can
travel as it is when the peer accepts that; Explicit VR Little Endian, the encrypted output's
encoding, included: a context offering only it lets the sealed file go to the wire unparsed
when the peer accepts it), plus one context offering Explicit and Implicit VR Little Endian,
which every Storage SCP must accept (PS3.5 10.1). The acceptor picks the transfer syntax of
each context, not us: pynetdicom (and so ``serve``) takes the first of *its own* list that was
proposed, which is Implicit VR Little Endian for the fallback context; DCMTK's ``storescp``
prefers Explicit. pynetdicom then re-encodes an uncompressed instance between Explicit and
Implicit VR while sending, and the SCU decompresses a compressed file whose own context was
refused (see :mod:`dicomcrypt.net.scu`).

An association can carry at most 128 presentation contexts (PS3.8 9.3.2.2: the context ID is an
odd number 1-255), so a send that needs more is split into groups of SOP classes, each sent
over its own association.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomcrypt.errors import NoAcceptedContextError

MAX_CONTEXTS = 128
"""PS3.8 9.3.2.2: presentation context IDs are odd integers 1-255."""

NATIVE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
"""The fallback offered for every SOP class, Explicit first; which one travels is the peer's choice."""

VERIFICATION = UID("1.2.840.10008.1.1")
"""The Verification SOP Class of C-ECHO (PS3.4 A.4). Spelled out: pynetdicom's ``sop_class``
names are generated at run time, so a type checker cannot see them."""


RETIRED_IMAGE_STORAGE: tuple[UID, ...] = (
    UID("1.2.840.10008.5.1.4.1.1.3"),  # Ultrasound Multi-frame Image Storage (Retired)
    UID("1.2.840.10008.5.1.4.1.1.5"),  # Nuclear Medicine Image Storage (Retired)
    UID("1.2.840.10008.5.1.4.1.1.6"),  # Ultrasound Image Storage (Retired)
    UID("1.2.840.10008.5.1.4.1.1.12.3"),  # X-Ray Angiographic Bi-Plane Image Storage (Retired)
    UID("1.2.840.10008.5.1.4.1.1.77.1"),  # VL Image Storage - Trial (Retired)
    UID("1.2.840.10008.5.1.4.1.1.77.2"),  # VL Multi-frame Image Storage - Trial (Retired)
)
"""Retired image Storage SOP classes that pynetdicom's ``AllStoragePresentationContexts`` lacks
and old archives still hold (ultrasound above all): ``serve`` accepts them too. ``send`` needs no
list: it proposes the SOP class each file names."""


@dataclass(frozen=True)
class ContextRequest:
    """One presentation context to propose: an abstract syntax and its transfer syntaxes."""

    abstract_syntax: UID
    transfer_syntaxes: tuple[UID, ...]


def contexts_for(sop_class: str, transfer_syntaxes: Iterable[str]) -> list[ContextRequest]:
    """The contexts proposed for one SOP class whose files are in ``transfer_syntaxes``."""
    own = sorted({UID(ts) for ts in transfer_syntaxes} - {ImplicitVRLittleEndian})
    requests = [ContextRequest(UID(sop_class), (ts,)) for ts in own]
    requests.append(ContextRequest(UID(sop_class), NATIVE))
    return requests


def plan_groups(needs: Mapping[str, Iterable[str]]) -> list[list[ContextRequest]]:
    """Contexts for ``{sop_class: transfer syntaxes}``, packed into groups of at most 128.

    A SOP class never spans two groups, so every instance is sent over an association that
    proposed all of its contexts. Order is stable (sorted by SOP class UID).
    """
    groups: list[list[ContextRequest]] = []
    current: list[ContextRequest] = []
    for sop_class in sorted(needs):
        requests = contexts_for(sop_class, needs[sop_class])
        if len(requests) > MAX_CONTEXTS:  # ~30 transfer syntaxes exist; cannot happen
            raise ValueError(f"{sop_class}: more than {MAX_CONTEXTS} transfer syntaxes")
        if len(current) + len(requests) > MAX_CONTEXTS:
            groups.append(current)
            current = []
        current.extend(requests)
    if current:
        groups.append(current)
    return groups


def fit_to_accepted(accepted: Iterable[Any], dataset: Dataset, sop_class: str) -> Dataset:
    """``dataset`` as one of the ``accepted`` presentation contexts (an association's
    ``accepted_contexts``) can carry it: ``send`` and the gateway's forwarder both ask.

    Uncompressed syntaxes convert into one another (pynetdicom does it while encoding). A
    compressed instance whose syntax the peer refused goes as a decompressed copy when the peer
    accepted an uncompressed little endian one, under the same SOP Instance UID (an envelope is
    bound to it): its values are what the codec decodes, nothing is lost beyond what the
    original compression lost. Raises :class:`NoAcceptedContextError` saying what the peer took.
    """
    tsyntax = UID(str(dataset.file_meta.TransferSyntaxUID))
    offered = [UID(cx.transfer_syntax[0]) for cx in accepted if cx.abstract_syntax == sop_class]
    name = UID(sop_class).name
    if not offered:
        raise NoAcceptedContextError(f"the peer accepted no presentation context for {name}")
    if tsyntax in offered or not tsyntax.is_compressed:
        return dataset
    if not any(not ts.is_compressed and ts.is_little_endian for ts in offered):
        raise NoAcceptedContextError(
            f"the peer accepts {name} only as {', '.join(ts.name for ts in offered)}, not {tsyntax.name}"
        )
    plain = copy.deepcopy(dataset)
    try:
        plain.decompress(generate_instance_uid=False)
    except Exception as exc:  # noqa: BLE001 - pydicom's decoders raise many types
        raise NoAcceptedContextError(
            f"the peer refused {tsyntax.name} and the pixels cannot be decompressed: {exc}"
        ) from None
    return plain
