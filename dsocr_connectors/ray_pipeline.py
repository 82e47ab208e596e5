"""Convert an archive over a Ray cluster: one `Converter` (one model) per replica, one manifest.

The driver, the process that calls `convert_with_ray`:
1. holds the output folder (its lock: one run at a time), expands the sources
   (`collect_sources`), hashes them and plans exactly like `OutputFolder` (the same
   manifest, skip rules and stems: `OutputFolder.plan`);
2. sends the plans through `ray.data.from_items(...).map_batches(ConvertBatch, ...)`, a pool
   of `num_replicas` actors, each holding one `Converter` on `num_gpus_per_replica` GPUs;
3. records each document's manifest entry as it comes back (committed at once), so a
   killed run resumes. It alone writes the manifest.

A replica converts a batch of documents together (their pages share engine calls) and
writes their files itself with `write_document` (atomic writes, the same exporters as one
machine), then returns one manifest entry per document. A document whose conversion raises
comes back as an entry with an `"error"` and one failed page; no files are written for it and
the next run converts it again. A batch whose replica dies (a crash in native code, out of
memory) is retried `MAX_TASK_RETRIES` times, then its documents come back the same way.

Every node must see the sources and the output folder at the same paths (a shared
filesystem); relative paths are resolved on the driver. Ray is imported only when called.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dsocr_connectors.pipeline.converter import Converter
from dsocr_connectors.pipeline.output_folder import (
    OutputFolder,
    Plan,
    Summary,
    collect_sources,
    write_document,
)

log = logging.getLogger(__name__)

DOCUMENTS_PER_BATCH = 8
SAVE_EVERY_S = 10.0
MAX_TASK_RETRIES = 2


def convert_with_ray(
    sources: str | Path | Iterable[str | Path],
    output: str | Path,
    *,
    num_replicas: int | None = None,
    num_gpus_per_replica: float = 1.0,
    batch_size: int = DOCUMENTS_PER_BATCH,
    redo_failed: bool = False,
    formats: Iterable[str] = ("md", "json", "figures"),
    recursive: bool = True,
    address: str | None = None,
    progress: bool = True,
    wait: float = 0.0,
    **converter_options: Any,
) -> Summary:
    """Convert sources into the output folder `output` on a Ray cluster; resumable.

    Args:
        sources: paths, folders and glob patterns (expanded on the driver).
        output: the output folder, laid out like `OutputFolder`'s (the two can take turns).
        num_replicas: converters running at once; None: as many as the cluster's GPUs allow
            (its CPUs when `num_gpus_per_replica` is 0).
        num_gpus_per_replica: GPUs each replica holds (0 for CPU engines: text layer, openai).
        batch_size: documents per replica call; their pages share engine calls.
        redo_failed: convert the failed pages of documents already done again.
        formats: among "md", "json", "html", "preview"; JSON is written in any case.
        recursive: descend into subfolders.
        address: the cluster to join when Ray is not initialised yet (None: `$RAY_ADDRESS`
            or a local one).
        progress: show Ray Data's progress bars.
        wait: seconds to wait for another run holding the output folder (`OutputFolder`).
        **converter_options: `Converter` arguments (engine, model, mode, ocr, dpi, batch_size
            as `page_batch_size`, ...); an engine by name, so each replica loads its own.

    Returns:
        The run's `Summary`, as `OutputFolder.convert` gives it.

    Raises:
        ImportError: Ray is not installed (`pip install "dsocr-connectors[ray]"`).
        ValueError, EngineUnavailable: bad options, checked once before any replica starts.
        FolderBusy: another run holds the output folder.
    """
    ray = _import_ray()
    if "page_batch_size" in converter_options:
        converter_options["batch_size"] = converter_options.pop("page_batch_size")
    converter_options["progress"] = False
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    folder = OutputFolder(output, formats=formats, redo_failed=redo_failed, wait=wait)
    if not ray.is_initialized():
        ray.init(address=address)
    shaping = _converter_settings(ray, converter_options, num_gpus_per_replica)
    with folder:  # one run per folder; the manifest is open while the lock is held
        options = folder.options_key(shaping, converter_options.get("password"))
        summary = Summary()
        plans = folder.plan(collect_sources(sources, output, recursive=recursive), options,
                            summary)
        if not plans:
            return summary
        num_batches = -(-len(plans) // batch_size)
        size = min(num_replicas or _cluster_replicas(ray, num_gpus_per_replica), num_batches)
        pending = {plan.key: plan for plan in plans}
        context = ray.data.DataContext.get_current()
        settings = context.max_errored_blocks, context.enable_progress_bars
        context.max_errored_blocks, context.enable_progress_bars = -1, progress and settings[1]
        try:
            dataset = ray.data.from_items([{"plan": _plan_to_json(p)} for p in plans]).map_batches(
                ConvertBatch,
                fn_constructor_kwargs={
                    "root": str(folder.root.resolve()), "formats": sorted(folder.formats),
                    "options": options, "converter_options": converter_options,
                },
                compute=ray.data.ActorPoolStrategy(size=size),
                num_gpus=num_gpus_per_replica,
                batch_size=batch_size,
                max_task_retries=MAX_TASK_RETRIES,
            )
            saved = time.monotonic()
            for row in dataset.iter_rows():
                _record(folder, pending.pop(row["key"]), json.loads(row["entry"]), summary)
                if time.monotonic() - saved > SAVE_EVERY_S:
                    folder.save_manifest()
                    saved = time.monotonic()
            for plan in pending.values():  # their batch failed past its retries
                error = RuntimeError("its Ray task failed (the replica died or was lost)")
                _record(folder, plan, failed_entry(plan, options, error), summary)
        finally:
            context.max_errored_blocks, context.enable_progress_bars = settings
            folder.save_manifest()
        return summary


class ConvertBatch:
    """A replica for Ray Data's `map_batches`: one `Converter`, made once per actor.

    Called with a batch `{"plan": [JSON plan, ...]}`, it converts those documents, writes
    their files under `root` and returns `{"key": [...], "entry": [JSON manifest entry, ...]}`,
    one row per plan whatever happens.
    """

    def __init__(self, *, root: str, formats: list[str], options: str,
                 converter_options: dict[str, Any]) -> None:
        self.root = Path(root)
        self.formats = set(formats)
        self.options = options
        self.converter = Converter(**converter_options)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        plans = [_plan_from_json(text) for text in batch["plan"]]
        entries: list[dict[str, Any]] = []
        try:
            documents = self.converter.iter_documents([plan.job() for plan in plans])
            for plan, document in zip(plans, documents):
                entries.append(self._write(plan, document))
        except Exception as exc:  # one document broke the batch: the rest one at a time
            log.warning("a batch broke after %d of %d documents (%s: %s); converting the "
                        "rest one at a time", len(entries), len(plans), type(exc).__name__, exc)
        for plan in plans[len(entries):]:
            entries.append(self._convert_one(plan))
        return {"key": [plan.key for plan in plans],
                "entry": [json.dumps(entry, ensure_ascii=False) for entry in entries]}

    def _convert_one(self, plan: Plan) -> dict[str, Any]:
        try:
            document = next(iter(self.converter.iter_documents([plan.job()])))
        except Exception as exc:
            log.warning("%s: conversion failed: %s: %s", plan.path, type(exc).__name__, exc)
            return failed_entry(plan, self.options, exc)
        return self._write(plan, document)

    def _write(self, plan: Plan, document: Any) -> dict[str, Any]:
        try:
            return write_document(self.root, self.formats, plan, document, self.options)
        except Exception as exc:
            log.warning("%s: writing failed: %s: %s", plan.path, type(exc).__name__, exc)
            return failed_entry(plan, self.options, exc)


def failed_entry(plan: Plan, options: str, error: BaseException) -> dict[str, Any]:
    """The manifest entry of a document whose conversion raised: its pages to convert (page 1
    when the whole document was) failed with the error. An entry with an "error" is never
    taken as done, so the next run converts the document again."""
    message = f"{type(error).__name__}: {error}"
    reason = {"status": "failed", "reason": f"conversion error: {message}"}
    return {
        "source": plan.source, "stem": plan.stem, "sha256": plan.sha256, "options": options,
        "error": message, "pages": {str(n): reason for n in plan.redo_pages or [1]},
    }


def _record(folder: OutputFolder, plan: Plan, entry: dict[str, Any], summary: Summary) -> None:
    """Record an entry; a redo that raised keeps the document as it was (its files are
    untouched) with the redone pages still failed, now with the error as their reason."""
    if "error" in entry and plan.redo_pages is not None:
        old = folder.entry(plan.key)
        entry = {**old, "pages": {**old["pages"], **entry["pages"]}}
    folder.record(plan, entry, summary)


def _converter_settings(ray: Any, converter_options: dict[str, Any], num_gpus: float) -> dict:
    """`Converter.options()` as a replica will have them (they name the engine that loads).

    Made here when replicas need no GPU; else in a one-off task on a GPU, whose process
    exits afterwards (`max_calls=1`) so the model's memory is freed. Either way bad options
    fail here, before any replica starts."""
    if num_gpus <= 0:
        return _settings(converter_options)
    task = ray.remote(num_gpus=num_gpus, max_calls=1)(_settings)
    return ray.get(task.remote(converter_options))


def _settings(converter_options: dict[str, Any]) -> dict[str, Any]:
    return Converter(**converter_options).options()


def _cluster_replicas(ray: Any, num_gpus: float) -> int:
    resources = ray.cluster_resources()
    if num_gpus <= 0:
        return max(1, int(resources.get("CPU", 1)))
    count = int(resources.get("GPU", 0) // num_gpus)
    if count < 1:
        raise ValueError(f"the Ray cluster has {resources.get('GPU', 0)} GPUs, fewer than "
                         f"{num_gpus} per replica; use num_gpus_per_replica=0 for a CPU engine")
    return count


def _plan_to_json(plan: Plan) -> str:
    return json.dumps({"key": plan.key, "path": str(plan.path.resolve()), "name": plan.source,
                       "stem": plan.stem, "sha256": plan.sha256, "redo": plan.redo_pages})


def _plan_from_json(text: str) -> Plan:
    data = json.loads(text)
    return Plan(data["key"], Path(data["path"]), data["stem"], data["sha256"],
                redo_pages=data["redo"], name=data["name"])


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError('convert_with_ray needs Ray: pip install "dsocr-connectors[ray]"') from exc
    return ray
