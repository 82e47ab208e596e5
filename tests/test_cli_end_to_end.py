"""The whole product on a released-format random checkpoint, through the CLI in a subprocess:
`dsocr ocr` on an image and `dsocr convert --model` on the scanned example. The tiny model's
words are noise; what is checked is that every stage runs and reports honestly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsocr_connectors.pipeline.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]


def dsocr(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "dsocr_connectors.cli", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_dsocr_ocr_runs_a_random_checkpoint_loaded_by_path(tiny_checkpoint):
    result = dsocr("ocr", "examples/page.png", "--model", str(tiny_checkpoint), "--mode", "base",
                   "--max-new-tokens", "8", "--device", "cpu", "--format", "json")
    assert result.returncode == 0, result.stderr
    [page] = json.loads(result.stdout)
    assert page["file"].endswith("page.png") and page["error"] is None
    assert page["finish_reason"] in ("eos", "length", "repetition")
    assert page["num_vision_tokens"] == 16 * 17 + 1  # base: 16x16 grid + newlines + separator
    assert 0 < page["num_output_tokens"] <= 8 and len(page["token_ids"]) <= 8


@pytest.mark.slow
def test_dsocr_convert_with_a_model_reads_scans_and_accounts_for_every_page(tiny_checkpoint,
                                                                           tmp_path):
    out = tmp_path / "out"
    result = dsocr("convert", "examples/scanned.pdf", "examples/born_digital.pdf", "-o",
                   str(out), "--model", str(tiny_checkpoint), "--mode", "tiny",
                   "--max-new-tokens", "8", "--device", "cpu", "--reparse", "off")
    assert result.returncode in (0, 2), result.stderr
    scanned = json.loads((out / "scanned.json").read_text())
    born = json.loads((out / "born_digital.json").read_text())
    assert [p["number"] for p in scanned["pages"]] == [1, 2]
    for page in scanned["pages"]:  # read by the model, then judged: nothing silently dropped
        assert page["engine"] == "native" and page["raw_output"] is not None
        assert page["num_vision_tokens"] == 8 * 9 + 1  # tiny mode
        assert page["status"] in ("ok", "recovered", "fallback", "failed")
        assert page["status"] == "ok" or page["reason"]
    assert all(p["engine"] == "text-layer" for p in born["pages"])  # ocr=auto: text layer
    assert len(read_manifest(out)["documents"]) == 2
