"""benchmarks/ocr2.py runs end to end at tiny sizes on the CPU (the GPU run is the same code)."""

from __future__ import annotations

import json

import pytest

from benchmarks import ocr2

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_tiny_cpu_run_reports_every_mode(tmp_path, capsys):
    out = tmp_path / "ocr2.json"
    rows = ocr2.main([
        "--tiny", "--device", "cpu", "--modes", "small", "base", "gundam",
        "--batch-sizes", "2", "--new-tokens", "3", "--step-reps", "2", "--out", str(out),
    ])
    text = len(ocr2.TEXT_IDS) + 1
    assert [(r["mode"], r["prompt_tokens"]) for r in rows] == [
        ("small", 145 + text), ("base", 257 + text), ("gundam", 257 + 6 * 144 + text),
    ]
    for r in rows:
        assert r["pages_per_s"] > 0 and r["decode_step_ms"] > 0 and r["encoder_ms_per_page"] > 0
        assert r["batch"] == 2 and r["phases_s"]["decode_steps"] >= 2
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(rows))
    assert "pages/s" in capsys.readouterr().out
