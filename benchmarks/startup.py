"""How long the first ten minutes take: `dsocr --help`, a text-layer conversion, `dsocr info`.

Each command runs in a fresh process, `--runs` times after one unmeasured run, and the median
wall time and CPU time (user + system, of the process and its children) are reported. CPU
time is the figure to compare on a shared machine: wall time there includes waiting for
the other processes.

Warm: files in the page cache, as on a second run. Cold: before each run the command's
own files (the installed packages it imports and this project) are dropped from the page
cache with posix_fadvise(DONTNEED), as on a first run after installing; the interpreter
and the standard library stay cached, and on a virtual machine the host may still cache
the disk, so a new machine's very first run can be slower than this.

"first page" is the time from starting the process to the first page coming out of
`Converter.iter_pages` (text layer, no model), read from the process's own output.

    python -m benchmarks.startup --runs 10 --out benchmarks/results_startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PDF = ROOT / "examples" / "born_digital.pdf"
DSOCR = [sys.executable, "-m", "dsocr_connectors.cli"]
FIRST_PAGE = (
    "import sys\n"
    "from dsocr_connectors.pipeline import Converter\n"
    f"for page in Converter().iter_pages({str(PDF)!r}):\n"
    "    print('page', page.number, page.status.value, flush=True)\n"
    "    break\n"
)
# What each command imports, listed by a run of it with this appended (for `--cold`).
_LIST_FILES = (
    "\nimport atexit, json, sys\n"
    "atexit.register(lambda: print('@@' + json.dumps(sorted({getattr(m, '__file__', None) "
    "or '' for m in list(sys.modules.values())} - {''})), file=sys.stderr))\n"
)


def commands(out: Path) -> dict[str, list[str]]:
    return {
        "dsocr --help": [*DSOCR, "--help"],
        "dsocr convert born_digital.pdf (2 pages, text layer)": [
            *DSOCR, "convert", str(PDF), "-o", str(out), "-q"],
        "first page (Converter.iter_pages, text layer)": [sys.executable, "-c", FIRST_PAGE],
        "dsocr info": [*DSOCR, "info"],
        "python -c 'import torch' (for scale)": [sys.executable, "-c", "import torch"],
    }


def run_once(command: list[str], out: Path, *, until_line: str | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run; with `until_line`, wall time until the
    process prints a line starting with it."""
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    seen = None
    assert process.stdout is not None
    for line in process.stdout:
        if seen is None and until_line and line.startswith(until_line):
            seen = time.perf_counter() - start
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 2):
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}")
    return (seen if until_line else wall), usage.ru_utime + usage.ru_stime


def files_of(command: list[str]) -> list[Path]:
    """The installed packages' folders and project files the command's imports come from."""
    if command[1] == "-c":
        listed = [*command[:2], command[2] + _LIST_FILES]
    else:  # -m module args: run the module through runpy with the lister first
        code = (_LIST_FILES + "import runpy, sys\n"
                f"sys.argv = {['dsocr', *command[3:]]!r}\n"
                f"runpy.run_module({command[2]!r}, run_name='__main__')\n")
        listed = [command[0], "-c", code]
    result = subprocess.run(listed, cwd=ROOT, capture_output=True, text=True)
    line = next(x for x in result.stderr.splitlines() if x.startswith("@@"))
    site = [Path(p) for p in sys.path if p.endswith("site-packages")]
    folders = set()
    for name in json.loads(line[2:]):
        path = Path(name)
        for root in [*site, ROOT]:
            if path.is_relative_to(root):
                parts = path.relative_to(root).parts
                folders.add(root / parts[0] if len(parts) > 1 else path)
    return sorted(folders)


def evict(paths: list[Path]) -> None:
    """Drop the files under `paths` from the page cache (the pages nobody has mapped)."""
    for top in paths:
        files = [top] if top.is_file() else (p for p in top.rglob("*") if p.is_file())
        for path in files:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def measure(name: str, command: list[str], out: Path, runs: int, cold: bool) -> dict:
    until = "page " if command[-1] == FIRST_PAGE else None
    cache = files_of(command) if cold else []
    run_once(command, out, until_line=until)  # unmeasured: caches, bytecode
    walls, cpus = [], []
    for _ in range(runs):
        if cold:
            evict(cache)
        wall, cpu = run_once(command, out, until_line=until)
        walls.append(wall)
        cpus.append(cpu)
    return {
        "command": name, "cache": "cold" if cold else "warm", "runs": runs,
        "wall_median_s": round(statistics.median(walls), 3), "wall_min_s": round(min(walls), 3),
        "cpu_median_s": round(statistics.median(cpus), 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-cold", action="store_true", help="warm runs only")
    parser.add_argument("--no-torch", action="store_true", help="leave out the torch line")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        for name, command in commands(out).items():
            if args.no_torch and "torch" in name:
                continue
            for cold in (False,) if args.no_cold else (False, True):
                rows.append(measure(name, command, out, args.runs, cold))
                row = rows[-1]
                print(f"{row['command']:<55} {row['cache']:<5} wall {row['wall_median_s']:6.3f} s"
                      f" (min {row['wall_min_s']:.3f})  cpu {row['cpu_median_s']:6.3f} s",
                      flush=True)
    if args.out:
        load = os.getloadavg()
        args.out.write_text(json.dumps({
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average_1_5_15": [round(x, 2) for x in load]},
            "rows": rows,
        }, indent=1) + "\n")


if __name__ == "__main__":
    main()
