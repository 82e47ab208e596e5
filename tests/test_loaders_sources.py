"""Sources: folders, globs, explicit files, kind detection by magic bytes, and prefetching."""

from __future__ import annotations

import gc
import io
import threading
import time
import weakref

import pymupdf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from loaders import (
    LoaderError,
    count_pages,
    detect_kind,
    iter_pages,
    iter_sources,
    prefetch,
    select_pages,
)


def pdf_bytes(num_pages: int = 1) -> bytes:
    doc = pymupdf.open()
    for number in range(num_pages):
        doc.new_page(width=200, height=200).insert_text((20, 40), f"page {number + 1}")
    return doc.tobytes()


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def tree(tmp_path):
    files = {
        "b.png": png_bytes(),
        "a.pdf": pdf_bytes(),
        "notes.txt": b"hello",
        "sub/c.JPG": png_bytes(),  # a PNG under a JPEG name: the bytes decide
        "sub/deeper/d.tif": png_bytes(),
        ".hidden/e.png": png_bytes(),
        ".f.png": png_bytes(),
    }
    for relative, data in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp_path


def names(paths, root):
    return [p.relative_to(root).as_posix() for p in paths]


def test_folder_is_walked_sorted_skipping_unsupported_and_hidden(tree):
    found = names(iter_sources(tree), tree)
    assert found == ["a.pdf", "b.png", "sub/c.JPG", "sub/deeper/d.tif"]
    assert names(iter_sources(tree, recursive=False), tree) == ["a.pdf", "b.png"]
    assert names(iter_sources(str(tree), extensions=["pdf"]), tree) == ["a.pdf"]


def test_globs_explicit_files_and_duplicates(tree):
    assert names(iter_sources(f"{tree}/**/*.png"), tree) == ["b.png"]
    assert names(iter_sources(f"{tree}/sub/*"), tree) == ["sub/c.JPG", "sub/deeper/d.tif"]
    both = iter_sources([tree / "b.png", tree, f"{tree}/*.pdf"])
    assert names(both, tree) == ["b.png", "a.pdf", "sub/c.JPG", "sub/deeper/d.tif"]
    assert names(iter_sources(tree / "notes.txt"), tree) == ["notes.txt"]  # named: kept


def test_nothing_named_is_dropped_silently(tree):
    missing, pattern, text = iter_sources([tree / "nope.pdf", f"{tree}/*.xyz", tree / "notes.txt"])
    [page] = iter_pages(missing)
    assert str(page.error) == f"{missing}: no such file"
    [page] = iter_pages(pattern)
    assert "no supported file matches this pattern" in str(page.error)
    [page] = iter_pages(text)
    assert str(page.error).startswith(f"{text}: unsupported file type")
    [page] = iter_pages(tree)
    assert "is a folder" in str(page.error)


def test_detect_kind_reads_magic_bytes_not_names(tree, tmp_path):
    assert detect_kind(tree / "a.pdf") == "pdf"
    assert detect_kind(tree / "sub/c.JPG") == "image"
    assert next(iter_pages(tree / "sub/c.JPG")).image.size == (8, 8)
    assert detect_kind(b"junk before the header %PDF-1.7\n" + pdf_bytes()[9:]) == "pdf"
    stream = io.BytesIO(png_bytes())
    stream.seek(0)
    assert detect_kind(stream) == "image" and stream.tell() == 0
    damaged = b"%PDx" + pdf_bytes()[4:]  # header bit-flipped: object syntax still says PDF
    assert detect_kind(damaged) == "pdf"
    renamed = tmp_path / "scan.pdf"
    renamed.write_bytes(b"\x00" * 16)  # no magic at all: the extension is the last resort
    assert detect_kind(renamed) == "pdf"
    with pytest.raises(LoaderError, match="unsupported file type"):
        detect_kind(b"plain text, nothing else")
    with pytest.raises(LoaderError, match="empty file"):
        detect_kind(b"", name="empty.bin")


@pytest.mark.parametrize("content, looks_like", [
    (b"\xef\xbb\xbf\n<!DOCTYPE html><html><body>Login</body></html>", "an HTML document"),
    (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00word/document.xml", "a Word document"),
    (b"PK\x03\x04\x14\x00\x00\x00\x00\x00notes.txt", "a ZIP archive"),
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "a gzip archive"),
    (b"Invoice 2024\nTotal: 12.50 \xe2\x82\xac\n", "a text file"),
    (b"\x00\x00\x00\x1cftypheic\x00\x00", "a HEIC/AVIF image"),
])
def test_a_file_named_pdf_that_is_not_one_says_what_it_looks_like(tmp_path, content, looks_like):
    path = tmp_path / "invoice.pdf"
    path.write_bytes(content)
    [page] = iter_pages(path)
    assert str(page.error).startswith(f"{path}: not a PDF: it looks like {looks_like}")
    with pytest.raises(LoaderError, match=f"unsupported file type \\(it looks like {looks_like}"):
        detect_kind(content)  # bytes: no name to go by


def test_count_pages_is_cheap_and_typed(tree):
    assert count_pages(pdf_bytes(7)) == 7
    assert count_pages(tree / "b.png") == 1
    with pytest.raises(LoaderError, match="notes.txt: unsupported"):
        count_pages(tree / "notes.txt")


class Tracked:
    """An item that counts how many of its kind are alive."""

    live = 0
    lock = threading.Lock()

    def __init__(self, index):
        self.index = index
        with Tracked.lock:
            Tracked.live += 1
        weakref.finalize(self, Tracked._gone)

    @staticmethod
    def _gone():
        with Tracked.lock:
            Tracked.live -= 1


def test_prefetch_renders_ahead_but_never_more_than_the_bound():
    Tracked.live = 0
    produced = []

    def source():
        for index in range(30):
            produced.append(index)
            yield Tracked(index)

    peak = 0
    out = []
    for item in prefetch(source(), max_in_flight=3):
        time.sleep(0.01)  # a slow consumer: the producer runs ahead and must stop at 3
        peak = max(peak, Tracked.live)
        out.append(item.index)
        del item
    assert out == list(range(30))
    assert peak == 4  # 3 ahead + the one in hand: the bound is reached and holds
    gc.collect()
    assert Tracked.live == 0


def test_prefetch_of_real_pages_stops_early_and_passes_errors():
    pages = prefetch(iter_pages(pdf_bytes(50)), max_in_flight=2)
    first = next(pages)
    assert first.number == 1 and first.image is not None
    time.sleep(0.2)
    pages.close()  # the thread stops and the PDF is closed; nothing hangs
    assert not [t for t in threading.enumerate() if t.name == "loaders-prefetch"]

    def failing():
        yield 1
        raise RuntimeError("boom")

    items = prefetch(failing(), max_in_flight=1)
    assert next(items) == 1
    with pytest.raises(RuntimeError, match="boom"):
        next(items)
    with pytest.raises(ValueError):
        prefetch([], max_in_flight=0)


MAGICS = [b"", b"%PDF-1.7\n", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"GIF89a", b"BM"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MAGICS), st.binary(max_size=400))
def test_any_bytes_give_pages_or_errors_never_an_exception(magic, body):
    pages = list(iter_pages(magic + body, name="fuzz"))
    assert pages
    for page in pages:
        assert (page.image is None) != (page.error is None)
        assert page.error is None or str(page.error).startswith("fuzz")


@given(st.lists(st.integers(1, 40), max_size=6), st.integers(0, 30))
def test_page_selection_strings_match_their_numbers(numbers, total):
    text = ",".join(str(n) for n in numbers)
    assert select_pages(text, total) == list(dict.fromkeys(numbers))
    assert select_pages(None, total) == list(range(1, total + 1))
    assert select_pages(f"2-{max(total, 2)}", total) == list(range(2, max(total, 2) + 1))
