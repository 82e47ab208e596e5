"""`convert_with_ray` on a local Ray session: every page accounted for, resumable, broken
files and broken conversions recorded, outputs identical to one machine's `OutputFolder`."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsocr_connectors.cli import main
from dsocr_connectors.document import Document
from dsocr_connectors.pipeline import Converter, OutputFolder
from dsocr_connectors.pipeline.manifest import read_manifest
from tests.test_cli_convert import make_folder

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install ray)")
pytestmark = pytest.mark.slow  # a local Ray cluster: about 45 s for the file

from dsocr_connectors import ray_pipeline  # noqa: E402
from dsocr_connectors.ray_pipeline import convert_with_ray  # noqa: E402

ON_CPU = {"num_replicas": 2, "num_gpus_per_replica": 0, "documents_in_flight": 1}


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def inputs(tmp_path) -> Path:
    """The CLI tests' folder (report.pdf: 2 text pages; more/mixed.pdf: 1 text page and 2
    scanned ones) and a corrupt PDF."""
    folder = make_folder(tmp_path)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not a PDF at all")
    return folder


def manifest(out: Path) -> dict:
    return read_manifest(out)["documents"]


def without_timings(path: Path) -> dict:
    document = Document.from_json(path.read_text())
    return document.model_copy(update={"pages": [
        p.model_copy(update={"timings": {}}) for p in document.pages
    ]}).model_dump()


def test_text_layer_run_accounts_for_every_page_like_one_machine_and_resumes(tmp_path, inputs):
    out, local = tmp_path / "out", tmp_path / "local"
    summary = convert_with_ray(inputs, out, engine="text-layer", **ON_CPU)
    assert (summary.num_converted, summary.num_skipped, summary.exit_code) == (3, 0, 2)
    assert summary.pages_by_status == {"ok": 3, "failed": 3}
    broken = [(s, n) for s, n, r in summary.failed if r.startswith("load error")]
    assert broken == [(str(inputs / "broken.pdf"), 1)]  # the corrupt file: one failed page
    assert sorted(summary.needs_model) == [(str(inputs / "more" / "mixed.pdf"), n) for n in (2, 3)]

    expected = OutputFolder(local).convert(
        Converter(engine="text-layer"), sorted(inputs.rglob("*.pdf"))
    )
    assert expected.pages_by_status == summary.pages_by_status
    assert manifest(out) == manifest(local)  # same keys, stems, hashes, options, pages
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in local.iterdir())
    for stem in ("report", "mixed", "broken"):
        assert (out / f"{stem}.md").read_text() == (local / f"{stem}.md").read_text()
        assert without_timings(out / f"{stem}.json") == without_timings(local / f"{stem}.json")

    gone = inputs / "gone" / "*.pdf"  # matches nothing: a failed page, not a dead run
    again = convert_with_ray([inputs / "*.pdf", inputs / "more", gone], out,
                             engine="text-layer", **ON_CPU)
    assert (again.num_converted, again.num_skipped) == (1, 3)
    assert again.pages_by_status == {"ok": 3, "failed": 4}
    assert again.failed[-1][0] == str(gone) and "matches this pattern" in again.failed[-1][2]
    assert not list(out.rglob(".*.tmp-*"))


def test_redo_failed_converts_only_the_failed_pages_again(tmp_path, inputs):
    out, marker = tmp_path / "out", tmp_path / "device-is-broken"
    marker.touch()  # while it exists the engine fails every page it is given
    options = {"engine": "tests.scripted_engine:MarkerEngine", "model": str(marker),
               "ocr": "auto", **ON_CPU}  # born-digital pages from their text layer
    first = convert_with_ray(inputs / "more", out, **options)
    mixed = manifest(out)[str((inputs / "more" / "mixed.pdf").resolve())]
    assert {n: p["status"] for n, p in mixed["pages"].items()} == {
        "1": "ok", "2": "failed", "3": "failed"}
    assert "device lost" in mixed["pages"]["2"]["reason"]
    assert first.exit_code == 2

    marker.unlink()
    assert convert_with_ray(inputs / "more", out, **options).num_skipped == 1
    redone = convert_with_ray(inputs / "more", out, redo_failed=True, **options)
    assert (redone.num_converted, redone.num_redone_pages, redone.exit_code) == (1, 2, 0)
    document = Document.from_json((out / "mixed.json").read_text())
    assert [(p.number, p.status.value, p.engine) for p in document.pages] == [
        (1, "ok", "text-layer"), (2, "ok", "marker"), (3, "ok", "marker")]
    assert sorted(p.name for p in (out / "mixed.raw").iterdir()) == ["0002.txt", "0003.txt"]


def test_a_conversion_that_raises_is_a_failed_record_and_is_tried_again(tmp_path, inputs):
    out = tmp_path / "out"
    options = {"engine": "tests.scripted_engine:BrokenResultsEngine", "model": "x",
               "num_replicas": 1, "num_gpus_per_replica": 0, "documents_in_flight": 3,
               "ocr": "auto"}  # born-digital pages from their text layer, not the engine
    summary = convert_with_ray(inputs, out, **options)  # one stream: it breaks on mixed.pdf
    assert summary.num_converted == 3
    entries = {Path(k).name: e for k, e in manifest(out).items()}
    assert "AttributeError" in entries["mixed.pdf"]["error"]
    assert entries["mixed.pdf"]["pages"]["1"]["status"] == "failed"
    assert not (out / "mixed.json").exists()
    assert [p["status"] for p in entries["report.pdf"]["pages"].values()] == ["ok", "ok"]
    assert (out / "report.md").exists() and "error" not in entries["report.pdf"]

    again = convert_with_ray(inputs, out, **options)
    assert (again.num_converted, again.num_skipped) == (1, 2)  # only the one that raised


def test_cli_ray_flags(tmp_path, inputs, capsys):
    out = tmp_path / "out"
    code = main(["convert", str(inputs / "report.pdf"), "-o", str(out), "--engine", "text-layer",
                 "--ray", "--replicas", "1", "--gpus-per-replica", "0", "-q"])
    assert code == 0, capsys.readouterr().err
    assert "# Chapter 2" in (out / "report.md").read_text()
    assert main(["convert", str(inputs), "-o", str(out), "--ray", "--replicas", "0",
                 "--gpus-per-replica", "0"]) == 1
    assert "--replicas must be at least 1" in capsys.readouterr().err


def test_a_replica_that_dies_fails_its_documents_and_the_run_goes_on(tmp_path, inputs,
                                                                     monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(ray_pipeline, "MAX_TASK_RETRIES", 0)  # each retry restarts an actor
    summary = convert_with_ray(inputs, out, engine="tests.scripted_engine:CrashingEngine",
                               model="x", ocr="auto", **ON_CPU)
    entries = {Path(k).name: e for k, e in manifest(out).items()}
    assert sorted(entries) == ["broken.pdf", "mixed.pdf", "report.pdf"]
    assert "Ray task failed" in entries["mixed.pdf"]["error"]
    assert [p["status"] for p in entries["report.pdf"]["pages"].values()] == ["ok", "ok"]
    assert summary.exit_code == 2


def test_an_interrupted_driver_keeps_what_it_recorded_and_the_next_run_resumes(
        tmp_path, inputs, monkeypatch):
    out, real_record = tmp_path / "out", ray_pipeline._record

    def record_once(folder, plan, entry, summary):
        real_record(folder, plan, entry, summary)
        raise KeyboardInterrupt  # Ctrl-C right after the first document came back

    monkeypatch.setattr(ray_pipeline, "_record", record_once)
    with pytest.raises(KeyboardInterrupt):
        convert_with_ray(inputs, out, engine="text-layer", **ON_CPU)
    assert len(manifest(out)) == 1  # committed as it came back

    monkeypatch.setattr(ray_pipeline, "_record", real_record)
    summary = convert_with_ray(inputs, out, engine="text-layer", **ON_CPU)
    assert (summary.num_converted, summary.num_skipped) == (2, 1)
    assert summary.pages_by_status == {"ok": 3, "failed": 3}


def test_a_replica_killed_mid_run_loses_no_page(tmp_path):
    """The replica's process exits after its third page; Ray restarts it and the driver sends
    the documents it held again, so one run ends with every page of every document."""
    from tests.test_cli_convert import make_pdf

    inputs, out, marker = tmp_path / "in", tmp_path / "out", tmp_path / "died"
    inputs.mkdir()
    for i in range(4):
        make_pdf(inputs / f"scan{i}.pdf", text_pages=0, scanned_pages=2)
    stats: dict = {}
    summary = convert_with_ray(inputs, out, engine="tests.scripted_engine:DiesOnceEngine",
                               model=str(marker), num_replicas=1, num_gpus_per_replica=0,
                               documents_in_flight=2, stats=stats)
    assert marker.exists()  # it did die
    assert stats["resent"] >= 1 and (stats["documents"], stats["replicas"]) == (4, 1)
    assert (summary.num_converted, summary.exit_code) == (4, 0)
    assert summary.pages_by_status == {"ok": 8}
    for entry in manifest(out).values():
        assert "error" not in entry and [p["status"] for p in entry["pages"].values()] == ["ok"] * 2
        document = Document.from_json((out / f"{entry['stem']}.json").read_text())
        assert [(p.number, p.engine) for p in document.pages] == [(1, "dies-once"), (2, "dies-once")]
