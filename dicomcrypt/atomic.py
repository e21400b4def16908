"""Writing a file all or nothing: temp file beside the target, fsync, rename, no clobbering.

The one writer for every output of the package: DICOM files (``files``), key files
(``crypto.keys``), model weights and cards (``codec``), send reports. Standard library only, so
the crypto layer may use it. The temp file lives in the target folder so the final step is a
rename or a hard link on one file system, never a copy, and a crash leaves either the old file
or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dicomcrypt.errors import OutputExistsError

__all__ = ["fsync_dir", "publish", "write_atomic"]

Writer = Callable[[IO[bytes]], None]

SECRET_MODE = 0o600
"""Key files: readable by their owner only, from the moment the temp file exists."""


def write_atomic(
    path: str | os.PathLike[str],
    content: bytes | Writer,
    *,
    force: bool = False,
    mode: int | None = None,
    exists_message: str | None = None,
    make_parents: bool = True,
) -> None:
    """Write ``content`` (bytes, or a function that writes to a binary file) at ``path``.

    Without ``force`` an existing ``path`` is refused with :class:`OutputExistsError`
    (``exists_message``, or a default naming the path), also when it appears while we write.
    Parent folders are created unless ``make_parents`` is false (then a missing folder raises
    ``FileNotFoundError``: key files are not written into a folder a typo made). ``mode`` sets
    the file's permissions; by default they follow the umask like any new file (the temp file
    itself is 0600 until then). The temp file is removed on any failure, Ctrl-C included.
    """
    path = Path(path)
    exists = exists_message or f"{path}: output exists (use --force to overwrite)"
    if not force and os.path.lexists(path):
        raise OutputExistsError(exists)
    if path.is_dir():
        raise OutputExistsError(f"{path}: output exists and is a folder")
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(content):
                content(fh)
            else:
                fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_umask())
        publish(tmp, path, force=force, exists_message=exists)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


_UMASK: int | None = None


def _umask() -> int:
    """The process umask, read once (reading it means setting it, so not per file)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK
