"""Fault injection: `dsocr convert` killed (SIGKILL) at 20 random moments of a multi-document
run, and resumed each time. After every kill each file in the folder is readable and each
document the manifest calls done is complete; the last run ends with every page of every
document present and every file readable.

The runs are children of a fork server that has imported dsocr once, so a run starts in
milliseconds, not the second and a half an interpreter needs (the suite runs on 2 cores).
Between runs the options change now and then (the mode: every document converted again
over its old files; `--redo-failed`: failed pages merged in; formats: files added), and the
engine fails a fifth of the pages, so kills land in each kind of write.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from dsocr_connectors.pipeline.atomic_write import TMP_PREFIX
from dsocr_connectors.pipeline.manifest import read_manifest
from tests.fault_engines import nothing, run_cli

SEED = 20240611
NUM_KILLS = 20
NAMES = [f"doc{i}" for i in range(4)]
PAGES = [1, 2]


def scanned_pdf(path: Path, pages: int) -> None:
    """Small pages (quick to render again for crops) with a picture and no text layer, so a
    page the engine fails stays failed (no text layer to fall back on)."""
    doc = pymupdf.open()
    for _ in range(pages):
        page = doc.new_page(width=200, height=260)
        pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), False)
        pixmap.clear_with(180)
        page.insert_image(pymupdf.Rect(20, 20, 180, 240), pixmap=pixmap)
    doc.save(path)


def readable(out: Path) -> None:
    """Every file dsocr wrote parses: JSON loads, PNGs decode, text is UTF-8; no temporary
    outside `.dsocr/tmp/`."""
    for path in out.rglob("*"):
        if ".dsocr" in path.relative_to(out).parts or path.is_dir():
            continue
        assert not path.name.startswith(TMP_PREFIX), path
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        else:
            path.read_text(encoding="utf-8")


def complete(out: Path, key: str, entry: dict) -> None:
    """A document the manifest calls done has every page and every file it links."""
    document = json.loads((out / f"{entry['stem']}.json").read_text(encoding="utf-8"))
    assert [p["number"] for p in document["pages"]] == PAGES, key
    assert sorted(map(int, entry["pages"])) == PAGES, key
    for page in document["pages"]:
        for block in page["blocks"]:
            crop = (block.get("figure") or {}).get("crop_path")
            assert crop is None or (out / crop).is_file(), (key, crop)
        if page["raw_output"] is not None:
            assert (out / f"{entry['stem']}.raw" / f"{page['number']:04d}.txt").is_file()
    for fmt in ("md", "html"):
        assert fmt not in entry["formats"] or (out / f"{entry['stem']}.{fmt}").is_file()


def check(out: Path) -> dict:
    readable(out)
    documents = read_manifest(out)["documents"] if (out / ".dsocr").exists() else {}
    for key, entry in documents.items():
        if "pending" not in entry and "error" not in entry:
            complete(out, key, entry)
    return documents


# Per run: the mode, whether HTML is asked for, --redo-failed. A few runs resume the same
# command, then something changes: a new mode (every document converted again over its
# old files), --redo-failed (failed pages converted and merged in), HTML (files added to
# documents already done, without the engine).
SCHEDULE = [("gundam", False, False)] * 4 + [("gundam", False, True)] * 2 \
    + [("base", False, False)] * 4 + [("base", True, False)] * 2 \
    + [("gundam", True, False)] * 4 + [("gundam", True, True)] * 2 \
    + [("base", False, False)] * 2


def arguments(inputs: Path, out: Path, run: int) -> list[str]:
    mode, html, redo = SCHEDULE[run]
    args = ["convert", str(inputs), "-o", str(out), "-q", "--engine",
            "tests.fault_engines:figure_engine", "--ocr", "always", "--dpi", "36",
            "--batch-size", "2", "--reparse", "off", "--mode", mode,
            "--format", "md,json,figures,preview" + (",html" if html else "")]
    return args + (["--redo-failed"] if redo else [])


def timed_run(context, args: list[str], log: Path, env: dict[str, str],
              kill_after: float | None = None) -> tuple[int, float]:
    """Run `dsocr ARGS` in a child; SIGKILL it after `kill_after` seconds if still running.
    Returns its exit code (-9: killed) and how long it ran."""
    child = context.Process(target=run_cli, args=(args, str(log), env))
    started = time.monotonic()
    child.start()
    child.join(kill_after)
    if child.exitcode is None:
        child.kill()
    child.join()
    return child.exitcode, time.monotonic() - started


@pytest.mark.slow
def test_convert_killed_at_random_moments_always_resumes_to_a_complete_folder(tmp_path):
    rng = random.Random(SEED)
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name in NAMES:
        scanned_pdf(inputs / f"{name}.pdf", len(PAGES))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["dsocr_connectors.cli", "dsocr_connectors.pipeline",
                                    "tests.fault_engines"])
    env = {"DSOCR_TEST_DELAY": "0.03", "DSOCR_TEST_FAIL": "0.2"}
    log = tmp_path / "runs.log"
    warm_up = context.Process(target=nothing)  # starts the fork server (imports dsocr once)
    warm_up.start()
    warm_up.join()
    # How long converting everything takes here, so that kills land while there is work.
    code, full = timed_run(context, arguments(inputs, tmp_path / "calibration", 0), log, env)
    assert code in (0, 2), log.read_text()[-4000:]

    killed = 0
    for run in range(NUM_KILLS):
        code, _ = timed_run(context, arguments(inputs, out, run), log, env,
                            kill_after=rng.uniform(0.02, full))
        assert code in (-9, 0, 2), (run, code, log.read_text()[-4000:])
        killed += code == -9
        check(out)
    assert killed >= NUM_KILLS // 4, killed  # runs were cut short, not only finished

    last = arguments(inputs, out, NUM_KILLS - 1) + ["--redo-failed"]
    code, _ = timed_run(context, last, log, {**env, "DSOCR_TEST_FAIL": "0"}, kill_after=120)
    assert code == 0, log.read_text()[-4000:]
    documents = check(out)
    assert sorted(e["stem"] for e in documents.values()) == NAMES
    for entry in documents.values():
        assert "pending" not in entry and "error" not in entry
        assert all(p["status"] == "ok" for p in entry["pages"].values())
    assert not list((out / ".dsocr" / "tmp").iterdir())
