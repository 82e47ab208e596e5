"""Page views prepared in processes (`core_model.engines.preparing`): the same views as in a
thread, the same tokens through the engine, no page lost when a process dies, a bad page
failed alone with its reason, and no file left behind."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest
import torch
from PIL import Image

from core_model.engines.interface import PageRequest
from core_model.engines.preparing import PreparingProcesses
from core_model.preprocess import prepare_image
from loaders.page import PixelFile

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX pipes")


def _scan(width: int, height: int, seed: int) -> Image.Image:
    """A page with content everywhere (resizing and tiling change every value)."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=g)
    return Image.fromarray(pixels.numpy(), "RGB")


@pytest.fixture()
def pixel_folder(tmp_path):
    folder = tmp_path / "pixels"
    folder.mkdir()
    return str(folder)


@pytest.mark.parametrize("mode", ["base", "gundam"])
def test_views_from_a_process_equal_those_prepared_here(pixel_folder, mode):
    image = _scan(700, 1000, seed=1)  # gundam: tiled
    stats: Counter = Counter()
    pool = PreparingProcesses(1, "deepseek-ocr", lambda key: stats.update([key]))
    try:
        views = pool.prepare(PixelFile.of(image, pixel_folder), mode)
        assert pool.prepare(image, mode) is None  # an image in memory stays with the caller
        assert os.listdir(pool.folder) == []  # each views file is read, then deleted
    finally:
        pool.close()
    expected = prepare_image(image, mode, normalize=False)
    assert views is not None and views.tile_grid == expected.tile_grid
    assert torch.equal(views.global_view, expected.global_view)
    if mode == "gundam":
        assert expected.tiles is not None and torch.equal(views.tiles, expected.tiles)
    assert stats == {"prepared_in_process": 1, "prepared_in_thread": 1}
    assert not os.path.exists(pool.folder)  # close() removes the scratch folder


def test_a_page_that_cannot_be_read_raises_its_reason(pixel_folder):
    missing = PixelFile(os.path.join(pixel_folder, "gone.pixels"), "RGB", (10, 10))
    pool = PreparingProcesses(1, "deepseek-ocr")
    try:
        with pytest.raises(ValueError, match="gone.pixels"):
            pool.prepare(missing, "base")
        # The process is still there for the next page.
        ok = pool.prepare(PixelFile.of(_scan(64, 64, 2), pixel_folder), "base")
        assert ok is not None and ok.global_view.shape == (3, 1024, 1024)
    finally:
        pool.close()


def test_a_dead_process_leaves_its_page_to_the_caller_and_is_replaced(pixel_folder):
    stats: Counter = Counter()
    pool = PreparingProcesses(1, "deepseek-ocr", lambda key: stats.update([key]))
    try:
        os.kill(pool._workers[0].process.pid, signal.SIGKILL)
        page = PixelFile.of(_scan(64, 64, 3), pixel_folder)
        assert pool.prepare(page, "base") is None  # the caller prepares it: nothing lost
        assert pool.prepare(page, "base") is not None  # a new process took its place
        assert stats == {"prepared_in_thread": 1, "prepared_in_process": 1}
    finally:
        pool.close()


def test_a_lazy_image_that_does_not_pickle_stays_with_the_caller():
    pool = PreparingProcesses(1, "deepseek-ocr")
    try:
        assert pool.prepare(lambda: _scan(64, 64, 4), "base") is None
    finally:
        pool.close()


def test_the_engine_reads_the_same_tokens_with_preparing_processes(tiny_checkpoint, pixel_folder):
    """Pages from pixel files through preparing processes decode exactly as the same images
    prepared in the engine's threads; a page whose pixels are gone fails alone."""
    from core_model.engines.native import NativeEngine

    images = [_scan(300 + 40 * i, 400, seed=10 + i) for i in range(3)]
    options = dict(device="cpu", max_new_tokens=8, eager=True)
    engine = NativeEngine.from_pretrained(tiny_checkpoint, prepare_processes=2, **options)
    try:
        lazy = [PixelFile.of(image, pixel_folder) for image in images]
        lazy.append(PixelFile(os.path.join(pixel_folder, "gone.pixels"), "RGB", (10, 10)))
        results = engine.generate([PageRequest(image=page, mode="tiny") for page in lazy])
        assert engine.stats["prepared_in_process"] == 3  # the 4th failed there
        folder = engine._processes.folder
    finally:
        engine.close()
    assert not os.path.exists(folder)
    here = NativeEngine.from_pretrained(tiny_checkpoint, **options)
    try:
        expected = here.generate([PageRequest(image=image, mode="tiny") for image in images])
        assert here._processes is None  # none by default on the CPU
    finally:
        here.close()
    assert [r.token_ids for r in results[:3]] == [r.token_ids for r in expected]
    assert all(r.error is None for r in results[:3])
    assert results[3].finish_reason == "error" and "gone.pixels" in results[3].error


def test_orphaned_views_folders_are_removed(tmp_path, monkeypatch):
    import subprocess
    import sys

    from core_model import worker_process

    monkeypatch.setattr(worker_process, "memory_dir", lambda: str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    orphan = tmp_path / f"dsocr-views-{gone.stdout.strip()}-x"
    orphan.mkdir()
    pool = PreparingProcesses(1, "deepseek-ocr")
    try:
        assert pool.folder.startswith(str(tmp_path)) and not orphan.exists()
    finally:
        pool.close()


def test_preparing_processes_do_without_torch():
    """The worker's imports leave torch out (each would cost ~200 MB and ~2 s to start)."""
    import subprocess
    import sys

    code = "import sys, core_model.engines.prepare_worker; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
