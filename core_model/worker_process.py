"""Helper processes of this package: a `python -m` child on two pipes, and a scratch folder in
shared memory whose files outlive no process.

The engine's process (`engines/engine_process.py`), the page-preparing processes
(`engines/preparing.py`) and the loading processes (`dsocr_connectors.pipeline`) are all
started the same way: a plain subprocess running one of this package's modules with its two
pipe ends as arguments, talking with `multiprocessing.connection` framing. Not
`multiprocessing` pools: their children import the caller's `__main__` again, so a script
without an `if __name__ == "__main__":` guard would start over in every child. Pixels do not
cross those pipes (an A4 page's 6 MB arrives in ~100 reads of 64 KB, each taking the GIL
back): they go through files in a scratch folder, in /dev/shm where it has room.

No torch here: the loading processes run without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # holds core_model, loaders, ...


def child_env() -> dict[str, str]:
    """The caller's environment with its import path: a child imports what the caller does
    (this package, a `module:attr` factory of the caller's)."""
    paths = [PACKAGE_ROOT] + [p or os.getcwd() for p in sys.path]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


@dataclass(eq=False)  # identity: a pool finds its own child in a list
class Child:
    """A `python -m` child: the process, the pipe its requests go down and the pipe its
    replies come up."""

    process: subprocess.Popen
    requests: Connection
    replies: Connection

    def stop(self, timeout: float = 5.0) -> None:
        """Close the pipes (the child exits on end of input); kill it if it has not within
        `timeout` seconds."""
        self.requests.close()
        self.replies.close()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_child(module: str, *args: str) -> Child:
    """`python -m module READ_FD WRITE_FD *args`; it ends when its request pipe closes."""
    to_child_read, to_child_write = os.pipe()
    from_child_read, from_child_write = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", module, str(to_child_read), str(from_child_write), *args],
            pass_fds=(to_child_read, from_child_write), env=child_env(),
            stdin=subprocess.DEVNULL,
        )
    except BaseException:
        for fd in (to_child_write, from_child_read):
            os.close(fd)
        raise
    finally:
        os.close(to_child_read)
        os.close(from_child_write)
    return Child(process, Connection(to_child_write, readable=False),
                 Connection(from_child_read, writable=False))


def memory_dir() -> str | None:
    """/dev/shm when it has room for a few hundred pages in flight; else None (the temp
    folder)."""
    try:
        if shutil.disk_usage("/dev/shm").free >= 2**30:
            return "/dev/shm"
    except OSError:
        pass
    return None


def scratch_dir(prefix: str, parent: str | None = None) -> str | None:
    """A new folder `prefix<this process id>-...` in `parent` (default: `memory_dir()`), after
    removing those of processes that died without cleaning up (killed: in /dev/shm they would
    hold memory until the machine restarts). None where none can be made."""
    parent = parent or memory_dir()
    remove_orphans(prefix, parent)
    try:
        return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent)
    except OSError:
        return None


def remove_orphans(prefix: str, parent: str | None) -> None:
    """Remove the `prefix<pid>-*` folders in `parent` whose process is gone."""
    folder = Path(parent or tempfile.gettempdir())
    for path in folder.glob(f"{prefix}*-*"):
        pid = path.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True
