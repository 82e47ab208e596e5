"""One run per output folder: a lock file (the `filelock` package) and who holds it.

The OS frees the lock when its process ends, however it ends (a SIGKILL included), so a
killed run never leaves the folder locked. Who holds it (pid, host, user, start, command)
is written beside it, so a refused run can say which run is in its way.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from dsocr_connectors.pipeline.atomic_write import write_atomic

log = logging.getLogger(__name__)

LOCK = "lock"
OWNER = "owner.json"


class FolderBusy(RuntimeError):
    """Another run holds the output folder; `owner` says which (pid, host, start, command)."""

    def __init__(self, root: Path, owner: dict[str, Any]) -> None:
        self.root = root
        self.owner = owner
        super().__init__(f"{self.describe()}; try again when it ends, or pass "
                         "wait=SECONDS to wait for it")

    def describe(self) -> str:
        """Which folder, and the run that holds it."""
        return describe_owner(self.root, self.owner)


def lock_folder(root: Path, private: Path, *, wait: float) -> FileLock:
    """Take `private/lock` for this process (`claim` then says who holds it).

    Args:
        root: the output folder (named in messages).
        private: the folder the lock lives in (`root/.dsocr`).
        wait: seconds to wait for another holder (`math.inf`: no limit; 0: refuse at once).

    Returns:
        The held lock; `unlock_folder` gives it back.

    Raises:
        FolderBusy: another process holds it (still, after `wait` seconds).
    """
    lock = FileLock(private / LOCK, thread_local=False)  # given back by whichever thread
    try:
        lock.acquire(timeout=0)
    except Timeout:
        owner = _read_owner(private)
        if wait <= 0:
            raise FolderBusy(root, owner) from None
        log.warning("%s; waiting for it to end", describe_owner(root, owner))
        try:
            lock.acquire(timeout=-1 if math.isinf(wait) else wait)
        except Timeout:
            raise FolderBusy(root, _read_owner(private)) from None
    return lock


def claim(private: Path, tmp_dir: Path) -> None:
    """Write who holds the lock (call with the lock held)."""
    write_atomic(private / OWNER, json.dumps(_owner()), tmp_dir=tmp_dir)


def unlock_folder(lock: FileLock, private: Path) -> None:
    (private / OWNER).unlink(missing_ok=True)
    lock.release()


def describe_owner(root: Path, owner: dict[str, Any]) -> str:
    """'OUT is in use by another dsocr run (pid 12, host h, since ...: dsocr convert ...)'."""
    facts = [f"pid {owner['pid']}" if "pid" in owner else "",
             f"host {owner['host']}" if "host" in owner else "",
             f"since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(owner['started']))}"
             if "started" in owner else ""]
    described = ", ".join(f for f in facts if f)
    if owner.get("command"):
        described += f": {owner['command']}"
    return f"{root} is in use by another dsocr run" + (f" ({described})" if described else "")


def _owner() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (a container without passwd entry)
        user = ""
    return {"pid": os.getpid(), "host": socket.gethostname(), "user": user,
            "started": time.time(), "command": " ".join(["dsocr", *sys.argv[1:]])[:300]}


def _read_owner(private: Path) -> dict[str, Any]:
    try:
        return json.loads((private / OWNER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
