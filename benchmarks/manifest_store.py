"""The output folder's manifest at scale: SQLite (WAL, one transaction per document, what
`OutputFolder` uses) against one JSON file rewritten atomically per document (the earlier
layout), in a folder already holding N documents.

    python benchmarks/manifest_store.py --documents 10000 --pages 10 [--folder /data/tmp]

Measures, for each store: recording one more document (durable on return: fsync),
opening the folder's manifest, and looking up every document (what a rerun's plan does).
Run it on the filesystem that will hold output folders; fsync cost is the filesystem's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from dsocr_connectors.pipeline.atomic_write import write_atomic
from dsocr_connectors.pipeline.manifest import Manifest


def entry(n: int, pages: int) -> tuple[str, dict]:
    key = f"/archive/reports/{n // 1000:03d}/document-{n:06d}.pdf"
    return key, {
        "source": key, "stem": f"document-{n:06d}", "sha256": f"{n:064x}",
        "options": "3f2a9c0d1e4b5a6c", "formats": ["figures", "json", "md"],
        "pages": {str(p): {"status": "ok"} for p in range(1, pages + 1)},
    }


def median_ms(times: list[float]) -> float:
    return round(1000 * statistics.median(times), 2)


def bench_sqlite(root: Path, documents: int, pages: int, repeats: int) -> dict[str, float]:
    manifest = Manifest(root)
    with manifest.transaction():
        for n in range(documents):
            key, value = entry(n, pages)
            manifest.put(key, value)
    record = []
    for n in range(documents, documents + repeats):
        key, value = entry(n, pages)
        started = time.perf_counter()
        manifest.put(key, value)  # autocommit: one transaction, fsynced (synchronous=FULL)
        record.append(time.perf_counter() - started)
    manifest.close()
    opened, lookups = [], []
    for _ in range(5):
        started = time.perf_counter()
        manifest = Manifest(root)
        opened.append(time.perf_counter() - started)
        started = time.perf_counter()
        for n in range(documents):
            manifest.get(entry(n, 0)[0])
        lookups.append(time.perf_counter() - started)
        manifest.close()
    size = sum(p.stat().st_size for p in (root / ".dsocr").glob("manifest.sqlite*"))
    return {"record_ms": median_ms(record), "open_ms": median_ms(opened),
            "lookup_all_ms": median_ms(lookups), "size_mb": round(size / 1e6, 1)}


def bench_json(root: Path, documents: int, pages: int, repeats: int) -> dict[str, float]:
    path = root / "manifest.json"
    data = {"version": 1, "documents": dict(entry(n, pages) for n in range(documents))}
    write_atomic(path, json.dumps(data, indent=1, ensure_ascii=False))
    record = []
    for n in range(documents, documents + repeats):
        key, value = entry(n, pages)
        started = time.perf_counter()
        data["documents"][key] = value  # what the earlier save_manifest did per document
        write_atomic(path, json.dumps(data, indent=1, ensure_ascii=False))
        record.append(time.perf_counter() - started)
    opened, lookups = [], []
    for _ in range(5):
        started = time.perf_counter()
        loaded = json.loads(path.read_text(encoding="utf-8"))
        opened.append(time.perf_counter() - started)
        started = time.perf_counter()
        for n in range(documents):
            loaded["documents"].get(entry(n, 0)[0])
        lookups.append(time.perf_counter() - started)
    return {"record_ms": median_ms(record), "open_ms": median_ms(opened),
            "lookup_all_ms": median_ms(lookups), "size_mb": round(path.stat().st_size / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--pages", type=int, default=10, help="pages per document")
    parser.add_argument("--repeats", type=int, default=30, help="documents recorded, timed")
    parser.add_argument("--folder", help="where to make the folders (default: the temp dir)")
    args = parser.parse_args()
    print(f"{args.documents} documents of {args.pages} pages already recorded")
    print(f"{'store':8} {'record one (ms)':>16} {'open (ms)':>10} {'look up all (ms)':>17} "
          f"{'size (MB)':>10}")
    for name, bench in (("sqlite", bench_sqlite), ("json", bench_json)):
        with tempfile.TemporaryDirectory(dir=args.folder) as folder:
            row = bench(Path(folder), args.documents, args.pages, args.repeats)
        print(f"{name:8} {row['record_ms']:>16} {row['open_ms']:>10} {row['lookup_all_ms']:>17} "
              f"{row['size_mb']:>10}")


if __name__ == "__main__":
    main()
