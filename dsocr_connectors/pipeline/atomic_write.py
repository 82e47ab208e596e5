"""Atomic file writes: a temporary of this process's own, fsync, rename, then the folder's fsync.

A reader (or a run resumed after a kill) sees a file's old content or its new content,
never a part of it. The temporary is named `.dsocr-tmp-<pid>-<random>`, in a folder the
caller gives (the output folder's private `.dsocr/tmp/`) or beside the target; only names
of that pattern that this process made are ever removed here.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

TMP_PREFIX = ".dsocr-tmp-"

# A hard link is how a write refuses to replace a file; where a filesystem has none, the
# check and the rename are two steps (a race with another writer is then possible).
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def temp_name() -> str:
    """A temporary file name no other process or run can pick: pid and 48 random bits."""
    return f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"


def write_atomic(
    path: str | Path,
    data: str | bytes,
    *,
    tmp_dir: str | Path | None = None,
    overwrite: bool = True,
    sync_dir: bool = True,
) -> None:
    """Write `data` (str as UTF-8) to `path`: temporary file, fsync, rename.

    Args:
        path: the target; its folder is created if needed.
        data: the content.
        tmp_dir: where the temporary goes (same filesystem as `path`); default beside it.
        overwrite: replace an existing `path`; False raises FileExistsError instead, and
            never replaces a file, even one another process creates meanwhile.
        sync_dir: fsync `path`'s folder after the rename, so the new name survives a power
            loss; a caller writing many files into one folder can do it once at the end.

    Raises:
        FileExistsError: `path` exists and `overwrite` is False.
        OSError: the write or the rename failed; `path` is then unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp_dir or path.parent) / temp_name()
    try:
        with open(tmp, "xb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def _link_new(tmp: Path, path: Path) -> None:
    """Give `tmp`'s content the name `path` only if no file has that name."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if path.exists():
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def fsync_dir(folder: str | Path) -> None:
    """Make a folder's entries (new and renamed names) durable; a no-op where folders
    cannot be opened or synced (Windows, some network filesystems)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
