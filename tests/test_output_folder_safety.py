"""The output folder under concurrency, crashes and awkward names: one run at a time, only our
own temporaries removed, atomic files, names that never collide, old folders still open."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time

import pytest
from PIL import Image

from dsocr_connectors.document import Document
from dsocr_connectors.pipeline import Converter, OutputFolder
from dsocr_connectors.pipeline import atomic_write as atomic_write_module
from dsocr_connectors.pipeline.manifest import read_manifest
from dsocr_connectors.pipeline.output_folder import FolderBusy, collect_sources
from tests.scripted_engine import TABLE_PAGE, ScriptedEngine
from tests.test_output_folder import sources  # noqa: F401  (the fixture)


class FigureEngine(ScriptedEngine):
    """Every page is a page with a figure (so crops are written)."""

    def _one(self, request):
        self.script.setdefault(request.image.info["page_id"], [(TABLE_PAGE, "eos")])
        return super()._one(request)


def documents(out):
    return read_manifest(out)["documents"]


def test_a_second_run_is_refused_naming_the_first_or_waits_for_it(tmp_path):
    out = tmp_path / "out"
    first = OutputFolder(out)
    first.open()
    with pytest.raises(FolderBusy, match=rf"out is in use by another dsocr run \(pid {os.getpid()}"):
        OutputFolder(out).open()
    started = time.monotonic()
    with pytest.raises(FolderBusy):
        OutputFolder(out, wait=0.3).open()
    assert time.monotonic() - started >= 0.3
    threading.Timer(0.3, first.close).start()
    with OutputFolder(out, wait=10) as second:  # gets the folder once the first gives it back
        assert second.entry("nothing") is None
    with OutputFolder(out):  # and gave it back in turn
        pass


def test_only_our_own_temporaries_are_removed(tmp_path, sources):  # noqa: F811
    out = tmp_path / "out"
    OutputFolder(out).convert(Converter(engine=ScriptedEngine()), sources[:1])
    users = [out / ".draft.tmp-2024", out / "a.raw" / ".draft.tmp-2024", out / ".a.md.tmp-77"]
    for path in users:
        path.write_text("the user's")
    ours = out / ".dsocr" / "tmp" / atomic_write_module.temp_name()  # a killed run's
    ours.write_text("half")
    OutputFolder(out).convert(Converter(engine=ScriptedEngine(), mode="base"), sources[:1])
    assert all(path.read_text() == "the user's" for path in users)
    assert not ours.exists() and not list((out / ".dsocr" / "tmp").iterdir())


def test_a_temporary_written_while_the_next_run_clears_them_does_not_stop_it(
        tmp_path, sources, monkeypatch):  # noqa: F811
    """A writer of a killed run (a Ray replica not dead yet) can put a file into the
    temporaries' folder while the next run clears it: that run still opens the folder."""
    out = tmp_path / "out"
    OutputFolder(out).convert(Converter(engine=ScriptedEngine()), sources[:1])
    late = out / ".dsocr" / "tmp" / atomic_write_module.temp_name()
    real_rmtree = shutil.rmtree

    def rmtree_raced(path, ignore_errors=False):
        real_rmtree(path, ignore_errors=ignore_errors)
        if str(path).endswith("tmp"):  # the late writer's file lands: the folder stays
            late.parent.mkdir(exist_ok=True)
            late.write_text("half")

    monkeypatch.setattr(shutil, "rmtree", rmtree_raced)
    summary = OutputFolder(out).convert(Converter(engine=ScriptedEngine(), mode="base"),
                                        sources[:1])
    assert summary.num_converted == 1 and not summary.failed


def test_an_input_named_manifest_is_a_document_like_any_other(tmp_path, sources):  # noqa: F811
    out = tmp_path / "out"
    named = sources[0].with_name("manifest.pdf")
    shutil.copy(sources[0], named)
    summary = OutputFolder(out).convert(Converter(engine=ScriptedEngine()), [named, sources[1]])
    assert summary.num_converted == 2
    assert Document.from_json((out / "manifest.json").read_text()).source == str(named)
    again = OutputFolder(out).convert(Converter(engine=ScriptedEngine()), [named, sources[1]])
    assert (again.num_converted, again.num_skipped) == (0, 2)
    assert sorted(e["stem"] for e in documents(out).values()) == ["b", "manifest"]


def test_names_never_collide_with_other_sources_or_files_already_there(tmp_path, sources):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.md").write_text("the user's notes")
    upper = sources[2].with_name("A.pdf")  # in/sub/A.pdf beside in/a.pdf: one name, two cases
    sources[2].rename(upper)
    OutputFolder(out).convert(Converter(engine=ScriptedEngine()), [sources[0], sources[1], upper])
    stems = {os.path.basename(k): e["stem"] for k, e in documents(out).items()}
    assert stems == {"a.pdf": "a", "b.pdf": "b-2", "A.pdf": "A-2"}
    assert (out / "b.md").read_text() == "the user's notes"


def test_a_folder_of_the_earlier_layout_is_imported_and_resumes(tmp_path, sources):  # noqa: F811
    out = tmp_path / "out"
    OutputFolder(out).convert(Converter(engine=ScriptedEngine()), sources)
    old = {"version": 1, "documents": {k: {key: v for key, v in e.items() if key != "formats"}
                                       for k, e in documents(out).items()}}
    shutil.rmtree(out / ".dsocr")
    (out / "manifest.json").write_text(json.dumps(old))  # what the earlier version wrote

    engine = ScriptedEngine()
    summary = OutputFolder(out).convert(Converter(engine=engine), sources)
    assert (summary.num_converted, summary.num_skipped, engine.batches) == (0, 3, [])
    assert not (out / "manifest.json").exists()
    assert json.loads((out / ".dsocr" / "manifest-v1.json").read_text()) == old
    named = sources[0].with_name("manifest.pdf")  # the name that used to break the folder
    shutil.copy(sources[0], named)
    summary = OutputFolder(out).convert(Converter(engine=ScriptedEngine()), [*sources, named])
    assert (summary.num_converted, summary.num_skipped) == (1, 3)
    assert len(documents(out)) == 4


@pytest.mark.parametrize("inside", ["in/out", "in"])
def test_an_output_folder_among_the_inputs_is_not_converted_again(tmp_path, sources, inside):  # noqa: F811
    inputs, out = tmp_path / "in", tmp_path / inside
    first = OutputFolder(out, formats=["md", "json", "figures", "preview"]).convert(
        Converter(engine=FigureEngine(), reparse="off"), [inputs])
    assert first.num_converted == 3 and list(out.glob("*.figures/*.png"))
    again = OutputFolder(out).convert(Converter(engine=FigureEngine(), reparse="off"), [inputs])
    assert (again.num_converted, again.num_skipped) == (0, 3)
    other = inputs / "older-run"  # another output folder in the inputs, from an earlier run
    OutputFolder(other).convert(Converter(engine=FigureEngine(), reparse="off"), sources[:1])
    assert sorted(p.name for p in collect_sources([inputs], out)) == ["a.pdf", "a.pdf", "b.pdf"]
    crop = next(other.glob("a.figures/*.png"))
    assert collect_sources([crop], out) == [crop]  # a file named on its own is always kept


def test_an_interrupted_rewrite_leaves_no_half_file_and_no_done_document(tmp_path, sources,  # noqa: F811
                                                                         monkeypatch):
    out = tmp_path / "out"
    OutputFolder(out).convert(Converter(engine=FigureEngine(), reparse="off"), sources[:2])
    real_fsync, calls = os.fsync, []

    def dying_fsync(fd):  # the 5th file of the re-conversion never completes
        calls.append(fd)
        if len(calls) == 5:
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(atomic_write_module.os, "fsync", dying_fsync)
    with pytest.raises(KeyboardInterrupt):
        OutputFolder(out).convert(Converter(engine=FigureEngine(), reparse="off", mode="base"),
                                  sources[:2])
    monkeypatch.setattr(atomic_write_module.os, "fsync", real_fsync)
    for png in out.rglob("*.png"):
        with Image.open(png) as image:
            image.load()
    entry = documents(out)[str(sources[0].resolve())]
    assert entry["pending"] == "all"  # not done, under its old options either
    engine = FigureEngine()
    summary = OutputFolder(out).convert(Converter(engine=engine, reparse="off"), sources[:2])
    assert summary.num_converted == 2 and "pending" not in documents(out)[str(sources[0].resolve())]


def test_a_redo_stopped_midway_is_finished_by_the_next_run(tmp_path, sources, monkeypatch):  # noqa: F811
    out, b = tmp_path / "out", sources[1]
    engine = ScriptedEngine({f"{b}#2": [("device lost", "error"), (TABLE_PAGE, "eos")]})
    OutputFolder(out).convert(Converter(engine=engine, reparse="off"), sources[:2])
    real_write = atomic_write_module.os.replace

    def dying_replace(src, dst):
        if str(dst).endswith("b.json"):
            raise KeyboardInterrupt
        real_write(src, dst)

    monkeypatch.setattr(atomic_write_module.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        OutputFolder(out, redo_failed=True).convert(Converter(engine=engine, reparse="off"),
                                                    sources[:2])
    monkeypatch.setattr(atomic_write_module.os, "replace", real_write)
    assert documents(out)[str(b.resolve())]["pending"] == [2]
    summary = OutputFolder(out).convert(Converter(engine=engine, reparse="off"), sources[:2])
    assert (summary.num_converted, summary.num_redone_pages, summary.exit_code) == (1, 1, 0)
    doc = Document.from_json((out / "b.json").read_text())
    assert [p.status for p in doc.pages] == ["ok", "ok", "ok"]
    assert "![figure](b.figures/" in (out / "b.md").read_text()  # md rewritten with page 2


def test_write_atomic_can_refuse_to_replace(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_module.write_atomic(target, "first", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write_module.write_atomic(target, "second", overwrite=False)
    assert target.read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["x.json"]
