"""The resumable archive: files per document, manifest, skip by hash, redo failed pages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import loaders
from dsocr_connectors.document import Document
from dsocr_connectors.pipeline import Converter, OutputFolder
from dsocr_connectors.pipeline import output_folder as output_folder_module
from dsocr_connectors.pipeline.atomic_write import write_atomic
from dsocr_connectors.pipeline.manifest import read_manifest
from tests.scripted_engine import CLEAN, TABLE_PAGE, ScriptedEngine, make_page


@pytest.fixture
def sources(tmp_path, monkeypatch):
    """Three small 'PDF' files; the loader makes pages for them from their byte length."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    paths = [folder / "a.pdf", folder / "b.pdf", folder / "sub" / "a.pdf"]
    for i, path in enumerate(paths):
        path.write_bytes(b"%PDF-fake " + b"x" * (i + 2))

    def iter_pages(source, *, dpi=144, pages=None, password=None, max_pixels=None, name=None,
                   extract_tables=True, text_layer=True):
        count = len(open(source, "rb").read()) - 10
        for number in pages if pages is not None else range(1, count + 1):
            yield make_page(str(source), number, total=count)

    monkeypatch.setattr(loaders, "iter_pages", iter_pages, raising=False)
    return paths


def manifest(out):
    return read_manifest(out)


def test_first_run_writes_every_file_and_the_manifest(tmp_path, sources):
    out = tmp_path / "out"
    summary = OutputFolder(out).convert(Converter(engine=ScriptedEngine()), sources)
    assert (summary.num_converted, summary.num_skipped, summary.exit_code) == (3, 0, 0)
    assert summary.pages_by_status == {"ok": 2 + 3 + 4}
    assert sorted(p.name for p in out.iterdir()) == [
        ".dsocr", "a-2.json", "a-2.md", "a-2.raw", "a.json", "a.md", "a.raw",
        "b.json", "b.md", "b.raw",
    ]
    assert (out / "a.raw" / "0002.txt").read_text() == CLEAN
    doc = Document.from_json((out / "b.json").read_text())
    assert [p.number for p in doc.pages] == [1, 2, 3]
    entry = manifest(out)["documents"][str(sources[0].resolve())]
    assert entry["stem"] == "a" and entry["pages"] == {"1": {"status": "ok"}, "2": {"status": "ok"}}
    assert entry["formats"] == ["figures", "json", "md"] and "pending" not in entry
    assert not list((out / ".dsocr" / "tmp").iterdir())  # every temporary was renamed


def test_rerun_skips_done_documents_and_redoes_changed_ones(tmp_path, sources):
    out = tmp_path / "out"
    OutputFolder(out).convert(Converter(engine=ScriptedEngine()), sources)
    engine = ScriptedEngine()
    summary = OutputFolder(out).convert(Converter(engine=engine), sources)
    assert (summary.num_converted, summary.num_skipped) == (0, 3) and engine.batches == []
    assert summary.pages_by_status == {"ok": 9}

    sources[1].write_bytes(b"%PDF-fake yy")  # same name, other bytes, two pages now
    engine = ScriptedEngine()
    summary = OutputFolder(out).convert(Converter(engine=engine), sources)
    assert (summary.num_converted, summary.num_skipped) == (1, 2)
    assert {pid for b in engine.batches for pid, _ in b} == {f"{sources[1]}#1", f"{sources[1]}#2"}
    assert list(manifest(out)["documents"][str(sources[1].resolve())]["pages"]) == ["1", "2"]
    assert sorted(p.name for p in (out / "b.raw").iterdir()) == ["0001.txt", "0002.txt"]

    summary = OutputFolder(out).convert(Converter(engine=ScriptedEngine(), mode="base"), sources)
    assert summary.num_converted == 3  # other options: everything again


def test_redo_failed_reconverts_only_failed_pages_and_merges(tmp_path, sources):
    out = tmp_path / "out"
    b = sources[1]
    engine = ScriptedEngine({f"{b}#2": [("device lost", "error"), (CLEAN, "eos")]})
    summary = OutputFolder(out).convert(Converter(engine=engine), sources)
    assert summary.exit_code == 2
    assert summary.failed == [(str(b), 2, "engine error: device lost")]

    summary = OutputFolder(out).convert(Converter(engine=engine), sources)  # no redo: skipped
    assert summary.num_skipped == 3 and summary.exit_code == 2 and engine.attempts[f"{b}#2"] == 1

    before = len(engine.batches)
    summary = OutputFolder(out, redo_failed=True).convert(Converter(engine=engine), sources)
    assert engine.batches[before:] == [[(f"{b}#2", "gundam")]]
    assert (summary.num_converted, summary.num_skipped, summary.num_redone_pages) == (1, 2, 1)
    assert summary.exit_code == 0
    doc = Document.from_json((out / "b.json").read_text())
    assert [(p.number, p.status) for p in doc.pages] == [(1, "ok"), (2, "ok"), (3, "ok")]
    assert manifest(out)["documents"][str(b.resolve())]["pages"]["2"] == {"status": "ok"}


def test_a_killed_write_leaves_no_document_that_looks_done(tmp_path, sources, monkeypatch):
    out = tmp_path / "out"
    real_write = output_folder_module.write_document

    def dying_write(root, formats, plan, document, options):
        if plan.path == sources[1]:
            (out / "b.md").write_text("half a file")
            raise KeyboardInterrupt
        return real_write(root, formats, plan, document, options)

    monkeypatch.setattr(output_folder_module, "write_document", dying_write)
    with pytest.raises(KeyboardInterrupt):
        OutputFolder(out).convert(Converter(engine=ScriptedEngine()), sources)
    assert list(manifest(out)["documents"]) == [str(sources[0].resolve())]

    monkeypatch.setattr(output_folder_module, "write_document", real_write)
    engine = ScriptedEngine()
    summary = OutputFolder(out).convert(Converter(engine=engine), sources)
    assert (summary.num_converted, summary.num_skipped) == (2, 1)
    assert (out / "b.md").read_text() != "half a file"


def test_write_atomic_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "doc.json"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]  # no temporary left behind


def test_unknown_format_and_broken_manifest_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        OutputFolder(tmp_path, formats=["md", "docx"])
    (tmp_path / "manifest.json").write_text("{not json")  # an earlier layout's, broken
    with pytest.raises(ValueError, match="manifest.json: not a readable manifest"):
        OutputFolder(tmp_path).open()
    with pytest.raises(ValueError, match="manifest.json: not a readable manifest"):
        OutputFolder(tmp_path).open()  # the same after a failed first open
    (tmp_path / "manifest.json").write_text('{"source": "manifest.pdf", "pages": []}')
    with pytest.raises(ValueError, match="input named manifest.*overwrite its manifest"):
        OutputFolder(tmp_path).open()


def test_html_and_layout_previews_are_written_for_pages_with_blocks(tmp_path, sources):
    out = tmp_path / "out"
    OutputFolder(out, formats=["html", "preview"]).convert(
        Converter(engine=ScriptedEngine()), sources[:1])
    assert "<html" in (out / "a.html").read_text().lower()
    previews = sorted(p.name for p in (out / "a.preview").iterdir())
    assert previews == ["page-0001-layout.png", "page-0002-layout.png"]
    assert not (out / "a.md").exists() and (out / "a.json").exists()
    with pytest.raises(ValueError, match="unknown format"):
        OutputFolder(out, formats=["docx"])


def test_a_source_that_cannot_be_read_is_a_failed_page_and_is_tried_every_run(tmp_path):
    out, missing = tmp_path / "out", tmp_path / "gone.pdf"
    summary = OutputFolder(out).convert(Converter(engine="text-layer"), [missing])
    assert summary.num_converted == 1 and summary.exit_code == 2
    assert summary.failed[0][:2] == (str(missing), 1) and "load error" in summary.failed[0][2]
    again = OutputFolder(out).convert(Converter(engine="text-layer"), [missing])
    assert (again.num_converted, again.num_skipped) == (1, 0)


def test_figures_are_cropped_and_linked_from_the_markdown(tmp_path, sources):
    out = tmp_path / "out"
    engine = ScriptedEngine({f"{sources[0]}#1": [(TABLE_PAGE, "eos")]})
    OutputFolder(out).convert(Converter(engine=engine, reparse="off"), sources[:1])
    crops = sorted((out / "a.figures").iterdir())
    assert crops and all(p.suffix == ".png" for p in crops)
    markdown = (out / "a.md").read_text()
    assert f"![figure](a.figures/{crops[0].name})" in markdown
    saved = json.loads((out / "a.json").read_text())
    figures = [b for b in saved["pages"][0]["blocks"] if b["type"] == "figure"]
    assert figures[0]["figure"]["crop_path"] == f"a.figures/{crops[0].name}"


@pytest.mark.parametrize("changed", [
    {"mode": "base"}, {"prompt": "<image>\nFree OCR."}, {"dpi": 72}, {"pages": [1]},
    {"max_new_tokens": 99}, {"ocr": "auto"}, {"reparse": "off"}, {"rerun_mode": "large"},
    {"password": "secret"}, {"engine": "text-layer"},
])
def test_every_option_that_shapes_pages_decides_whether_a_document_is_done(tmp_path, sources,
                                                                           changed):
    out = tmp_path / "out"
    OutputFolder(out).convert(Converter(engine=ScriptedEngine()), sources[:1])
    options = {"engine": ScriptedEngine(), **changed}
    summary = OutputFolder(out).convert(Converter(**options), sources[:1])
    assert (summary.num_converted, summary.num_skipped) == (1, 0)
    if not isinstance(options["engine"], str):
        options["engine"] = ScriptedEngine()
    summary = OutputFolder(out).convert(Converter(**options), sources[:1])
    assert (summary.num_converted, summary.num_skipped) == (0, 1)  # the same again: done


def test_the_password_is_stored_only_as_a_salted_hash(tmp_path, sources):
    out = tmp_path / "out"
    first, second = "hunter2-Zq9", "s3cr3t-Xk7"
    OutputFolder(out).convert(Converter(engine=ScriptedEngine(), password=first), sources[:1])
    other = OutputFolder(out).convert(Converter(engine=ScriptedEngine(), password=second),
                                      sources[:1])
    assert other.num_converted == 1  # another password may read other pages
    stored = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert first.encode() not in stored and second.encode() not in stored


def test_formats_asked_later_are_written_from_the_document_without_the_engine(tmp_path, sources):
    out = tmp_path / "out"
    OutputFolder(out, formats=["md", "json"]).convert(Converter(engine=ScriptedEngine()), sources)
    engine = ScriptedEngine()
    summary = OutputFolder(out, formats=["md", "json", "html"]).convert(Converter(engine=engine),
                                                                        sources)
    assert summary.num_converted == 3 and engine.batches == []
    assert {p.name for p in out.glob("*.html")} == {"a.html", "a-2.html", "b.html"}
    assert manifest(out)["documents"][str(sources[0].resolve())]["formats"] == ["html", "json", "md"]
    again = OutputFolder(out, formats=["md", "json"]).convert(Converter(engine=engine), sources)
    assert again.num_skipped == 3  # fewer formats than written: done


def encrypted_pdf(path, pages=2):
    import pymupdf

    doc = pymupdf.open()
    for n in range(pages):
        page = doc.new_page()
        page.insert_text((72, 90), f"Page {n + 1}: a born-digital paragraph with enough words "
                                   "to count as a usable text layer.", fontsize=11)
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="pw", owner_pw="owner")


def test_redo_failed_after_a_whole_file_failure_converts_every_page(tmp_path):
    source, out = tmp_path / "locked.pdf", tmp_path / "out"
    encrypted_pdf(source)
    summary = OutputFolder(out).convert(Converter(engine="text-layer"), [source])
    assert summary.exit_code == 2 and "a password is needed" in summary.failed[0][2]
    summary = OutputFolder(out, redo_failed=True).convert(Converter(engine="text-layer"), [source])
    assert summary.exit_code == 2  # still no password: failed again, nothing dropped
    summary = OutputFolder(out, redo_failed=True).convert(
        Converter(engine="text-layer", password="pw"), [source])
    assert summary.exit_code == 0 and summary.pages_by_status == {"ok": 2}
    doc = Document.from_json((out / "locked.json").read_text())
    assert [(p.number, p.status) for p in doc.pages] == [(1, "ok"), (2, "ok")]


def test_redo_failed_redoes_the_whole_file_when_a_failure_stands_for_the_rest(tmp_path, sources,
                                                                              monkeypatch):
    """A file that broke off after page 1 (an error naming no page) has pages nobody listed:
    its redo converts the whole file; a page whose own error names it is redone alone."""
    out, b = tmp_path / "out", sources[1]
    broken = {"yes": True}

    def iter_pages(source, *, dpi=144, pages=None, password=None, max_pixels=None, name=None,
                   extract_tables=True, text_layer=True):
        for number in pages if pages is not None else (1, 2, 3):
            if number == 2 and broken["yes"]:
                raise OSError("stream ended early")
            yield make_page(str(source), number, total=3)

    monkeypatch.setattr(loaders, "iter_pages", iter_pages, raising=False)
    summary = OutputFolder(out).convert(Converter(engine=ScriptedEngine()), [b])
    assert summary.failed == [(str(b), 2, "load error: stream ended early")]
    broken["yes"] = False
    engine = ScriptedEngine()
    summary = OutputFolder(out, redo_failed=True).convert(Converter(engine=engine), [b])
    assert summary.exit_code == 0 and sum(len(b) for b in engine.batches) == 3
    doc = Document.from_json((out / "b.json").read_text())
    assert [(p.number, p.status) for p in doc.pages] == [(1, "ok"), (2, "ok"), (3, "ok")]


def test_documents_are_recorded_in_whatever_order_the_converter_yields_them(tmp_path, sources):
    class LastFirst(Converter):  # a streaming converter yields documents as they finish
        def iter_documents(self, jobs):
            return reversed(list(super().iter_documents(jobs)))

    out = tmp_path / "out"
    OutputFolder(out).convert(LastFirst(engine=ScriptedEngine()), sources)
    for key, entry in manifest(out)["documents"].items():
        document = Document.from_json((out / f"{entry['stem']}.json").read_text())
        assert document.source == entry["source"] and str(Path(document.source).resolve()) == key
        assert len(document.pages) == len(open(document.source, "rb").read()) - 10
