"""`dsocr parse-raw` end to end, in a subprocess as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dsocr_connectors.cli import main
from dsocr_connectors.document import Document

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "raw_outputs"


def dsocr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dsocr_connectors.cli", "parse-raw", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_json_to_stdout_with_size_and_prompt() -> None:
    (path,) = DATA.glob("043_*.txt")
    result = dsocr(
        str(path), "--image-size", "800x1100", "--prompt", "<|grounding|>OCR this image."
    )
    assert result.returncode == 0, result.stderr
    doc = Document.from_json(result.stdout)
    page = doc.pages[0]
    assert (page.image_width, page.image_height) == (800, 1100)
    assert {b.type.value for b in page.blocks} == {"line"}


def test_pages_split_and_files_written(tmp_path: Path) -> None:
    raw = (DATA / "056_issue75-en-title-only.txt").read_text(encoding="utf-8")
    joined = tmp_path / "doc.txt"
    joined.write_text(raw + "\n\n<--- Page Split --->\nFree text\n\n<--- Page Split --->\n")
    out = tmp_path / "out"
    for fmt in ("json", "md", "html"):
        result = dsocr(str(joined), "--format", fmt, "-o", str(out))
        assert result.returncode == 0, result.stderr
    doc = Document.from_json((out / "doc.json").read_text(encoding="utf-8"))
    assert [p.number for p in doc.pages] == [1, 2]
    md = (out / "doc.md").read_text(encoding="utf-8")
    assert md.startswith("# LORA") and "<--- Page Split --->\n\nFree text" in md
    assert "<!DOCTYPE html>" in (out / "doc.html").read_text(encoding="utf-8")


def test_missing_file_is_named_and_others_still_parsed(tmp_path: Path) -> None:
    good = DATA / "020_odb-slide-single-fullpage-image.txt"
    result = dsocr(str(tmp_path / "nope.txt"), str(good), "--format", "md")
    assert result.returncode == 1
    assert "nope.txt" in result.stderr
    assert result.stdout == "\n"  # the figure page has no text, but it was processed


def test_bad_image_size_is_a_usage_error() -> None:
    result = dsocr(str(DATA / "056_issue75-en-title-only.txt"), "--image-size", "big")
    assert result.returncode == 2 and "WIDTHxHEIGHT" in result.stderr


def test_same_stems_get_distinct_names_and_nothing_is_overwritten(tmp_path: Path, capsys) -> None:
    first, second = tmp_path / "a" / "x.txt", tmp_path / "b" / "x.txt"
    for path, text in ((first, "First page text"), (second, "Second page text")):
        path.parent.mkdir()
        path.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.md").write_text("the user's own notes", encoding="utf-8")
    assert main(["parse-raw", str(first), str(second), "--format", "md", "-o", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "x-2.md"), str(out / "x-3.md")]
    assert (out / "x.md").read_text(encoding="utf-8") == "the user's own notes"
    assert (out / "x-2.md").read_text(encoding="utf-8").startswith("First page text")
    assert (out / "x-3.md").read_text(encoding="utf-8").startswith("Second page text")

    main(["parse-raw", str(first), str(second), "--format", "md", "-o", str(out), "--overwrite"])
    assert capsys.readouterr().out.split() == [str(out / "x.md"), str(out / "x-2.md")]
    assert (out / "x.md").read_text(encoding="utf-8").startswith("First page text")
    assert (out / "x-2.md").read_text(encoding="utf-8").startswith("Second page text")
    assert sorted(p.name for p in out.iterdir()) == ["x-2.md", "x-3.md", "x.md"]
