"""`dsocr convert` and `dsocr info` in a subprocess: outputs, summary, exit codes, kill+resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymupdf
import pytest

from dsocr_connectors.cli import main
from dsocr_connectors.pipeline.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = [sys.executable, "-m", "dsocr_connectors.cli"]  # `dsocr`, run from the checkout


def dsocr(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    environment.pop("DSOCR_MODEL", None) if env is None else None
    return subprocess.run([*LAUNCHER, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=environment)


def make_pdf(path: Path, *, text_pages: int = 1, scanned_pages: int = 0) -> None:
    doc = pymupdf.open()
    for n in range(text_pages):
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 90), f"Chapter {n + 1}", fontsize=20, fontname="hebo")
        page.insert_textbox(pymupdf.Rect(72, 110, 520, 200),
                            "A born-digital paragraph with enough words to be a usable layer.",
                            fontsize=11, fontname="helv")
    for _ in range(scanned_pages):  # a picture of text, no text layer
        page = doc.new_page(width=595, height=842)
        pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), False)
        pix.clear_with(200)
        page.insert_image(pymupdf.Rect(72, 72, 300, 300), pixmap=pix)
    doc.save(path)


def make_folder(root: Path) -> Path:
    """`root/in` with report.pdf (2 text pages) and more/mixed.pdf (1 text, 2 scanned pages)."""
    inputs = root / "in"
    (inputs / "more").mkdir(parents=True)
    make_pdf(inputs / "report.pdf", text_pages=2)
    make_pdf(inputs / "more" / "mixed.pdf", text_pages=1, scanned_pages=2)
    return inputs


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_folder(tmp_path)


def test_convert_without_a_model_reads_text_layers_and_lists_pages_that_need_one(tmp_path, folder):
    out = tmp_path / "out"
    result = dsocr("convert", folder, "-o", out, "-q")
    assert result.returncode == 2, result.stderr
    assert "no model configured" in result.stderr
    assert "pages that need a model" in result.stdout
    assert f"{folder / 'more' / 'mixed.pdf'}: pages 2-3" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert [p["status"] for p in report["pages"]] == ["ok", "ok"]
    assert report["pages"][0]["engine"] == "text-layer"
    assert "# Chapter 1" in (out / "report.md").read_text()
    mixed = json.loads((out / "mixed.json").read_text())
    assert [p["status"] for p in mixed["pages"]] == ["ok", "failed", "failed"]

    again = dsocr("convert", folder, "-o", out)
    assert again.returncode == 2
    assert "0 documents converted, 2 already done" in again.stdout
    assert "pages: 2 failed, 3 ok" in again.stdout


def test_born_digital_only_exits_0_and_page_selection(tmp_path, folder):
    out = tmp_path / "out"
    result = dsocr("convert", folder / "report.pdf", "-o", out, "--pages", "2",
                   "--format", "md,json")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "1 documents converted" in result.stdout and "pages: 1 ok" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert [p["number"] for p in report["pages"]] == [2]


@pytest.mark.parametrize(
    "args, message",
    [
        (["nowhere.pdf"], "no such file or folder"),
        (["{folder}", "--pages", "3-1"], "bad page range"),
        (["{folder}", "--ocr", "always"], "needs a model"),
        (["{folder}", "--engine", "tests.nowhere:Engine"], "tests.nowhere"),
        (["{folder}", "--format", "md,docx"], "unknown format"),
    ],
)
def test_usage_errors_exit_1_with_a_clear_message(tmp_path, folder, args, message, capsys,
                                                  monkeypatch):
    monkeypatch.delenv("DSOCR_MODEL", raising=False)
    args = [a.format(folder=folder) for a in args]
    try:
        code = main(["convert", *args, "-o", str(tmp_path / "out")])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 1
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_killed_run_resumes_and_skips_done_documents(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    names = [f"doc{i}" for i in range(6)]
    for name in names:
        make_pdf(inputs / f"{name}.pdf", text_pages=1)
    args = ["convert", inputs, "-o", out, "--engine", "tests.scripted_engine:slow_engine",
            "--ocr", "always", "--batch-size", "1", "--dpi", "36", "-q"]
    process = subprocess.Popen([*LAUNCHER, *map(str, args)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not documents(out):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    done = documents(out)
    assert done, process.stderr.read().decode()
    assert 1 <= len(done) < len(names)  # killed mid-run
    for entry in done.values():  # what the manifest lists is complete
        assert json.loads((out / f"{entry['stem']}.json").read_text())["pages"]

    result = dsocr(*args[:-1])  # the same command without -q, to read the summary
    assert result.returncode == 0, result.stderr
    final = documents(out)
    assert sorted(e["stem"] for e in final.values()) == names
    assert all(p["status"] == "ok" for e in final.values() for p in e["pages"].values())
    converted = len(names) - len(done)
    assert f"{converted} documents converted, {len(done)} already done" in result.stdout
    assert not list((out / ".dsocr" / "tmp").iterdir())


def documents(out: Path) -> dict:
    """The documents the output folder's manifest lists (none before it exists)."""
    if not (out / ".dsocr" / "manifest.sqlite").exists():
        return {}
    return read_manifest(out)["documents"]


def test_info_lists_engines_and_checks_the_model(tmp_path, capsys):
    assert main(["info"]) == 0
    shown = capsys.readouterr().out
    assert "text-layer  yes" in shown and "torch:" in shown
    assert "native      yes" in shown  # torch is installed wherever the tests run
    assert "vllm" in shown
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"language_config": {"num_hidden_layers": 3}}))
    assert main(["info", "--model", str(model)]) == 0
    assert "config loads: 3 decoder layers" in capsys.readouterr().out
    assert main(["info", "--model", str(tmp_path / "none")]) == 1
    assert "not a folder" in capsys.readouterr().out
