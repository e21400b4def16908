"""Publishing a finished file under its final name, atomically and without clobbering.

Shared by key files (``crypto.keys``) and DICOM outputs (``files``). Standard library only, so
the crypto layer may use it. The temp file lives in the target folder so the final step is a
rename or a hard link on one file system, never a copy.
"""

from __future__ import annotations

import os
from pathlib import Path

from dicomcrypt.errors import OutputExistsError


def publish(tmp: Path, path: Path, *, force: bool, exists_message: str) -> None:
    """Move the complete file ``tmp`` to ``path``; refuse an existing ``path`` unless ``force``.

    Without ``force`` the step is a hard link, which fails atomically if the name was taken
    meanwhile (another process, a second run); file systems without hard links (FAT, some
    network shares) fall back to check-then-rename. ``tmp`` is gone afterwards on success.
    """
    if force:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise OutputExistsError(exists_message) from None
        except OSError:
            if os.path.lexists(path):
                raise OutputExistsError(exists_message) from None
            os.replace(tmp, path)
        else:
            tmp.unlink()
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make the new directory entry durable (POSIX); best effort elsewhere."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
