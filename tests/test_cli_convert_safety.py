"""`dsocr convert` into one folder from several runs, after whole-file failures, with output
folders among the inputs and files that only pretend to be PDFs."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from dsocr_connectors.cli import main
from dsocr_connectors.pipeline.manifest import read_manifest
from tests.test_cli_convert import LAUNCHER, ROOT, make_folder, make_pdf
from tests.test_output_folder import encrypted_pdf

ENGINE = ["--engine", "tests.fault_engines:figure_engine", "--ocr", "always", "--dpi", "36",
          "--batch-size", "2", "--reparse", "off", "-q"]


def start(args, *, log: Path, **env) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with open(log, "w") as stream:
        return subprocess.Popen([*LAUNCHER, *map(str, args)], cwd=ROOT, env=environment,
                                stdout=stream, stderr=subprocess.STDOUT)


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def pdfs(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        make_pdf(folder / f"{name}.pdf")
    return folder


@pytest.mark.slow
def test_a_second_run_into_a_busy_folder_is_refused_or_waits_and_nothing_is_lost(tmp_path):
    first_in = pdfs(tmp_path / "first", ["a0", "a1", "a2", "a3"])
    second_in = pdfs(tmp_path / "second", ["b0", "b1", "b2"])
    out, gate = tmp_path / "out", tmp_path / "gate"
    gate.touch()  # the first run's engine waits until the gate is gone
    first = start(["convert", first_in, "-o", out, *ENGINE], log=tmp_path / "first.log",
                  DSOCR_TEST_GATE=str(gate))
    wait_for(lambda: (out / ".dsocr" / "owner.json").exists(), "the first run to hold the folder")

    refused = subprocess.run([*LAUNCHER, "convert", str(second_in), "-o", str(out), *ENGINE],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 3, refused.stderr
    assert f"is in use by another dsocr run (pid {first.pid}" in refused.stderr
    assert "--wait" in refused.stderr

    waiter_log = tmp_path / "waiter.log"
    waiter = start(["convert", second_in, "-o", out, *ENGINE, "--wait"], log=waiter_log)
    wait_for(lambda: "waiting for it to end" in waiter_log.read_text(), "the waiter to wait")
    gate.unlink()
    assert first.wait(timeout=120) == 0, (tmp_path / "first.log").read_text()
    assert waiter.wait(timeout=120) == 0, waiter_log.read_text()
    entries = read_manifest(out)["documents"].values()
    assert sorted(e["stem"] for e in entries) == ["a0", "a1", "a2", "a3", "b0", "b1", "b2"]
    assert all(p["status"] == "ok" for e in entries for p in e["pages"].values())


def test_a_whole_file_failure_is_redone_in_full_with_the_password(tmp_path, capsys):
    source, out = tmp_path / "locked.pdf", tmp_path / "out"
    encrypted_pdf(source, pages=2)
    assert main(["convert", str(source), "-o", str(out), "--engine", "text-layer"]) == 2
    shown = capsys.readouterr().out
    assert "a password is needed" in shown and "give the password with --password" in shown
    assert "password=" not in shown

    code = main(["convert", str(source), "-o", str(out), "--engine", "text-layer",
                 "--password", "pw", "--redo-failed"])
    assert code == 0, capsys.readouterr()
    assert "pages: 2 ok" in capsys.readouterr().out
    pages = json.loads((out / "locked.json").read_text())["pages"]
    assert [(p["number"], p["status"]) for p in pages] == [(1, "ok"), (2, "ok")]


@pytest.mark.parametrize("output", ["in/out", "in"])
def test_an_output_folder_inside_the_inputs_is_not_converted(tmp_path, capsys, output):
    inputs = make_folder(tmp_path)  # report.pdf, more/mixed.pdf
    out = tmp_path / output
    args = ["convert", str(inputs), "-o", str(out), "--format", "md,json,preview"]
    assert main(args) == 2  # mixed.pdf has scanned pages and there is no model
    assert list(out.glob("*.preview/*.png"))  # images a careless walk would take as inputs
    capsys.readouterr()
    assert main(args) == 2
    assert "0 documents converted, 2 already done" in capsys.readouterr().out


def test_a_file_that_is_not_a_pdf_says_what_it_is(tmp_path, capsys):
    fake = tmp_path / "invoice.pdf"
    fake.write_text("<!DOCTYPE html><html><body>Session expired</body></html>")
    assert main(["convert", str(fake), "-o", str(tmp_path / "out")]) == 2
    shown = capsys.readouterr().out
    assert f"{fake}: not a PDF: it looks like an HTML document" in shown
    assert "AssertionError" not in shown


@pytest.mark.parametrize("args, message", [
    (["--ocr", "always"], "--ocr always needs a model: give --model"),
    (["--engine", "native"], "--engine native needs a model: give --model"),
    (["--batch-size", "0"], "--batch-size: want a whole number of at least 1, not '0'"),
    (["--dpi", "-3"], "--dpi: want a whole number of at least 1"),
])
def test_usage_errors_name_the_flags(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.delenv("DSOCR_MODEL", raising=False)
    inputs = make_folder(tmp_path)
    try:
        code = main(["convert", str(inputs), "-o", str(tmp_path / "out"), *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 1
    assert message in capsys.readouterr().err
