"""The DIMSE statuses only the receiving node (``serve``) answers, and its whole C-STORE table.

The library's statuses (what :func:`dicomcrypt.receive.receive` decides: authentication, keys,
envelope, plain images, disk) live in :mod:`dicomcrypt.status`, shared with the PACS storage
hooks. The ones here exist only because ``serve`` files and stops: a duplicate SOP Instance UID under
its out/ tree, a receiver shutting down. They take codes in the same PS3.4 B.2.3 ranges.
``serve --forward`` answers success once an instance is durably queued, so the downstream's
state is never an upstream status (0xA701 and 0xA702, answered before the forward queue, are
retired; a queue that cannot be written is 0xA700).

``docs/conformance.md`` quotes :data:`STORE_STATUSES`, its source of truth.
"""

from __future__ import annotations

from dicomcrypt import status
from dicomcrypt.status import StoreStatus

__all__ = [
    "SHUTTING_DOWN",
    "DUPLICATE_CONFLICT",
    "STORE_STATUSES",
]

SHUTTING_DOWN = StoreStatus(
    0xA703, "shutting down", "Refused: Out of Resources (receiver is stopping)",
    "the instance arrived after SIGTERM/stop() began; nothing was stored",
    retry=True,
)
DUPLICATE_CONFLICT = StoreStatus(
    0xC006, "duplicate conflict", "Error: Cannot understand (SOP Instance UID already filed)",
    "a SOP Instance UID already filed with different content, policy keep-first: the first copy "
    "stays, the new one goes to quarantine/duplicates",
)

STORE_STATUSES: tuple[StoreStatus, ...] = (
    status.SUCCESS,
    status.OUT_OF_RESOURCES,
    SHUTTING_DOWN,
    status.DECRYPTION_FAILED,
    status.UNKNOWN_KEY,
    status.ENVELOPE_DAMAGED,
    status.CANNOT_UNDERSTAND,
    status.NOT_ENCRYPTED,
    DUPLICATE_CONFLICT,
    status.PROCESSING_FAILURE,
)
"""Every status ``serve`` answers to C-STORE, for the conformance statement."""
