"""`dsocr ocr` end to end (subprocess) with the openai engine against the stub server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from core_model.engines.interface import PageResult
from dsocr_connectors.cli.ocr import normalise_prompt, open_image
from tests.openai_stub import RED, StubServer, page

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    with StubServer() as srv:
        yield srv


@pytest.fixture
def images(tmp_path):
    good = tmp_path / "good.png"
    page(size=(64, 48)).save(good)
    other = tmp_path / "other.jpg"
    page(size=(80, 40)).save(other)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    failing = tmp_path / "failing.png"
    page(RED).save(failing)
    return {"good": good, "other": other, "broken": broken, "failing": failing}


def dsocr(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "dsocr_connectors.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def openai_args(server) -> list[str]:
    return ["--engine", "openai", "--base-url", server.base_url, "--model", "dsocr"]


def test_json_output_reports_every_file_and_exit_code_2(server, images):
    files = [str(images[k]) for k in ("good", "broken", "other", "failing")]
    proc = dsocr("ocr", *files, *openai_args(server), "--format", "json")
    assert proc.returncode == 2, proc.stderr
    records = json.loads(proc.stdout)
    assert [r["file"] for r in records] == files
    good, broken, other, failing = records
    assert broken["finish_reason"] == "error" and "broken.png" in broken["error"]
    assert good["text"] == "page 64x48" and good["finish_reason"] == "eos"
    assert good["token_ids"] == [1000, 1001] and good["num_vision_tokens"] == 5
    assert (good["num_prompt_tokens"], good["num_output_tokens"]) == (7, 2)
    assert set(good["timings"]) == {"encode", "request"} and good["error"] is None
    assert other["text"] == "page 80x40"
    assert failing["finish_reason"] == "error" and "HTTP 400" in failing["error"]
    assert "broken.png" in proc.stderr and "failing.png" in proc.stderr
    assert "mm_processor_kwargs" not in server.last_body()  # gundam: vLLM's default


def test_modes_a_vllm_server_cannot_serve_are_refused(server, images, capsys):
    from dsocr_connectors.cli import main

    code = main(["ocr", str(images["good"]), *openai_args(server), "--mode", "base"])
    assert code == 2 and "'base' mode" in capsys.readouterr().err


def test_raw_output_with_headers_and_prompt(server, images):
    files = [str(images["good"]), str(images["other"])]
    proc = dsocr(
        "ocr",
        *files,
        *openai_args(server),
        "--prompt",
        r"<image>\nFree OCR.",
        "--max-new-tokens",
        "77",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"==> {files[0]} <==\npage 64x48\n==> {files[1]} <==\npage 80x40\n"
    body = server.last_body()
    assert body["messages"][0]["content"][1]["text"] == "Free OCR."
    assert body["max_tokens"] == 77


def test_single_file_streams_without_header(server, images):
    proc = dsocr("ocr", str(images["good"]), *openai_args(server), "--stream")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "page 64x48\n"
    assert server.last_body()["stream"] is True


def test_openai_without_base_url_is_a_usage_error(images):
    proc = dsocr("ocr", str(images["good"]), "--engine", "openai", "--model", "dsocr")
    assert proc.returncode == 1 and "--base-url" in proc.stderr


def test_prompt_normalisation():
    assert normalise_prompt(r"<image>\nFree OCR.") == "<image>\nFree OCR."
    assert normalise_prompt("Free OCR.") == "<image>\nFree OCR."


def test_open_image_applies_exif_orientation(tmp_path):
    img = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    opened = open_image(str(path))
    assert opened.size == (20, 40) and opened.mode == "RGB"
    with pytest.raises(OSError, match="missing.png"):
        open_image(str(tmp_path / "missing.png"))


def test_an_engine_crash_fails_its_batch_only(tmp_path, monkeypatch, capsys):
    from dsocr_connectors.cli import main
    from dsocr_connectors.cli import ocr as ocr_cli

    class Flaky:
        name = "flaky"
        calls = 0

        def generate(self, requests, *, on_token=None):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("CUDA out of memory")
            return [PageResult(text="fine") for _ in requests]

    monkeypatch.setattr(ocr_cli, "build_engine", lambda args: Flaky())
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"p{i}.png"))
        page().save(paths[-1])
    code = main(["ocr", *paths, "--model", "m", "--batch-size", "2", "--format", "json"])
    records = json.loads(capsys.readouterr().out)
    assert code == 2
    assert [r["finish_reason"] for r in records] == ["error", "error", "eos"]
    assert "CUDA out of memory" in records[0]["error"] and records[2]["text"] == "fine"
