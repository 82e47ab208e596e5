"""Convert an archive over a Ray cluster: one streaming `Converter` (one model) per replica.

The driver, the process that calls `convert_with_ray`:
1. holds the output folder (its lock: one run at a time), expands the sources
   (`collect_sources`), hashes them and plans exactly like `OutputFolder` (the same
   manifest, skip rules and stems: `OutputFolder.plan`);
2. starts `num_replicas` Ray actors (`Replica`), each holding one `Converter` on
   `num_gpus_per_replica` GPUs, and keeps each one fed with documents, one Ray call per
   document, up to `documents_in_flight` at once per replica (default: the replica's cap on
   pages in flight, so that even one-page documents fill its engine); the next document goes
   to the replica with the fewest;
3. records each document's manifest entry as it comes back (committed at once), so a killed
   run resumes. It alone writes the manifest.

A replica converts every document it is given in one long-lived streaming run
(`DocumentQueue`): its engine never waits for a group of documents to finish. It writes each
document's files itself with `write_document` (atomic writes, the same exporters as one
machine) as soon as the document is done, and returns its manifest entry. When the run
breaks on a document (a bug), the documents in it are converted again one at a time; one
that still raises comes back as an entry with an `"error"` and one failed page, no files,
and the next run converts it again.

A replica whose process dies (a crash in native code, out of memory, a killed worker) is
restarted by Ray (`max_restarts=-1`); the driver sends it nothing until it answers again and
sends the documents it held again, each at most `MAX_TASK_RETRIES` times, then records them
with the error. So a killed replica loses no page in the same run.

Every node must see the sources and the output folder at the same paths (a shared
filesystem); relative paths are resolved on the driver. Ray is imported only when called;
only Ray core is used (actors and tasks with named options).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dsocr_connectors.pipeline.converter import Converter
from dsocr_connectors.pipeline.document_queue import DocumentQueue
from dsocr_connectors.pipeline.output_folder import (
    OutputFolder,
    Plan,
    Summary,
    collect_sources,
    write_document,
)
from dsocr_connectors.pipeline.progress import Progress

log = logging.getLogger(__name__)

MAX_TASK_RETRIES = 2


def convert_with_ray(
    sources: str | Path | Iterable[str | Path],
    output: str | Path,
    *,
    num_replicas: int | None = None,
    num_gpus_per_replica: float = 1.0,
    documents_in_flight: int | None = None,
    redo_failed: bool = False,
    formats: Iterable[str] = ("md", "json", "figures"),
    recursive: bool = True,
    address: str | None = None,
    progress: bool = True,
    wait: float = 0.0,
    stats: dict[str, Any] | None = None,
    batch_size: int | None = None,
    **converter_options: Any,
) -> Summary:
    """Convert sources into the output folder `output` on a Ray cluster; resumable.

    Args:
        sources: paths, folders and glob patterns (expanded on the driver).
        output: the output folder, laid out like `OutputFolder`'s (the two can take turns).
        num_replicas: converters running at once; None: as many as the cluster's GPUs allow
            (its CPUs when `num_gpus_per_replica` is 0).
        num_gpus_per_replica: GPUs each replica holds (0 for CPU engines: text layer, openai).
        documents_in_flight: documents a replica holds at once; None: its `Converter`'s
            `max_in_flight` (every page in flight may come from another document).
        redo_failed: convert the failed pages of documents already done again.
        formats: among "md", "json", "html", "preview"; JSON is written in any case.
        recursive: descend into subfolders.
        address: the cluster to join when Ray is not initialised yet (None: `$RAY_ADDRESS`
            or a local one).
        progress: a page progress bar on the driver (when stderr is a terminal).
        wait: seconds to wait for another run holding the output folder (`OutputFolder`).
        stats: a dict to fill with the run's figures: documents, pages, replicas,
            documents_in_flight, resent (documents sent again after a replica died),
            settings_s (checking the options: a converter made once, on a GPU if replicas
            need one), plan_s, wall_s, driver_busy_s (the driver's own work: planning,
            dispatching, recording), first_done_s and last_done_s (when the first
            and the last document came back) and first_pages (the first one's pages).
        batch_size: deprecated alias of `documents_in_flight`.
        **converter_options: `Converter` arguments (engine, model, mode, ocr, dpi,
            max_in_flight, ...); an engine by name, so each replica loads its own.

    Returns:
        The run's `Summary`, as `OutputFolder.convert` gives it.

    Raises:
        ImportError: Ray is not installed (`pip install "dsocr-connectors[ray]"`).
        ValueError, EngineUnavailable: bad options, checked once before any replica starts.
        FolderBusy: another run holds the output folder.
    """
    ray = _import_ray()
    started = time.perf_counter()
    if batch_size is not None:
        warnings.warn("convert_with_ray(batch_size=...) is deprecated: documents go one by "
                      "one into each replica's stream; use documents_in_flight",
                      DeprecationWarning, stacklevel=2)
        documents_in_flight = documents_in_flight or batch_size
    if "page_batch_size" in converter_options:  # the old name of Converter's batch_size
        converter_options["max_in_flight"] = converter_options.pop("page_batch_size")
    converter_options["progress"] = False
    if documents_in_flight is not None and documents_in_flight < 1:
        raise ValueError(f"documents_in_flight must be at least 1, not {documents_in_flight}")
    folder = OutputFolder(output, formats=formats, redo_failed=redo_failed, wait=wait)
    if not ray.is_initialized():
        ray.init(address=address)
    settings = _converter_settings(ray, converter_options, num_gpus_per_replica)
    settled = time.perf_counter()
    with folder:  # one run per folder; the manifest is open while the lock is held
        options = folder.options_key(settings["options"], converter_options.get("password"))
        summary = Summary()
        plans = folder.plan(collect_sources(sources, output, recursive=recursive), options,
                            summary)
        figures = stats if stats is not None else {}
        figures.update(documents=len(plans), settings_s=settled - started,
                       plan_s=time.perf_counter() - settled, resent=0)
        if plans:
            _dispatch(ray, folder, plans, options, summary, figures, started, progress=progress,
                      num_replicas=num_replicas, num_gpus_per_replica=num_gpus_per_replica,
                      per_replica=documents_in_flight or settings["max_in_flight"],
                      converter_options=converter_options)
        return summary


def _dispatch(ray: Any, folder: OutputFolder, plans: list[Plan], options: str,
              summary: Summary, figures: dict[str, Any], started: float, *, progress: bool,
              num_replicas: int | None, num_gpus_per_replica: float, per_replica: int,
              converter_options: dict[str, Any]) -> None:
    """Start the replicas, keep them fed and record every document as it comes back."""
    size = min(num_replicas or _cluster_replicas(ray, num_gpus_per_replica), len(plans))
    figures.update(replicas=size, documents_in_flight=per_replica)
    replica = ray.remote(Replica).options(
        num_gpus=num_gpus_per_replica, num_cpus=1 if num_gpus_per_replica <= 0 else 0,
        max_restarts=-1, max_task_retries=0, max_concurrency=per_replica + 1,
    )
    arguments = {"root": str(folder.root.resolve()), "formats": sorted(folder.formats),
                 "options": options, "converter_options": converter_options}
    replicas = [replica.remote(**arguments) for _ in range(size)]
    dispatcher = _Dispatcher(ray, replicas, per_replica, plans)
    bar = Progress(None if progress else False)
    busy = 0.0
    try:
        while dispatcher.has_work():
            work_started = time.perf_counter()
            dispatcher.fill()
            busy += time.perf_counter() - work_started
            for plan, entry, error in dispatcher.wait():
                work_started = time.perf_counter()
                if error is not None:
                    entry = failed_entry(plan, options, RuntimeError(
                        f"its Ray task failed (the replica died or was lost): {error}"))
                _record(folder, plan, entry, summary)
                for page in entry["pages"].values():
                    bar.update(page["status"])
                figures.setdefault("first_done_s", time.perf_counter() - started)
                figures.setdefault("first_pages", len(entry["pages"]))
                figures["last_done_s"] = time.perf_counter() - started
                busy += time.perf_counter() - work_started
    finally:
        bar.close()
        _stop(ray, replicas)
    figures.update(pages=bar.num_pages, resent=dispatcher.resent,
                   wall_s=time.perf_counter() - started, driver_busy_s=busy + figures["plan_s"])


def _stop(ray: Any, replicas: list[Any], timeout: float = 10.0) -> None:
    """Kill the replicas and wait (up to `timeout`) until Ray reports each dead: `ray.kill`
    returns before the process ends, and a replica still writing a document's files must not
    outlive the run's lock on the output folder (a rerun right after a Ctrl-C would clear
    the folder's temporaries under it)."""
    for handle in replicas:
        ray.kill(handle)
    deadline = time.monotonic() + timeout
    for handle in replicas:
        while (left := deadline - time.monotonic()) > 0:
            try:
                ray.get(handle.ping.remote(), timeout=left)
            except ray.exceptions.RayActorError:  # dead
                break
            except ray.exceptions.GetTimeoutError:
                return
            time.sleep(0.05)  # it still answers: the kill has not reached it yet


class _Dispatcher:
    """Keeps each replica holding up to `per_replica` documents, the next one to the replica
    holding the fewest. When a replica's call fails (its process died), the replica is taken
    out until it answers a `ping` again (Ray restarts it; a model takes a while to load), and
    the documents it held are sent again, each up to `MAX_TASK_RETRIES` times. A replica
    that does not come back within `DOWN_S`, or that Ray reports dead, stays out; when no
    replica is left, the remaining documents are given up with the error."""

    PING_EVERY_S = 1.0
    DOWN_S = 600.0

    def __init__(self, ray: Any, replicas: list[Any], per_replica: int, plans: list[Plan]):
        self.ray = ray
        self.replicas = replicas
        self.per_replica = per_replica
        self.waiting: list[tuple[Plan, int]] = [(plan, 0) for plan in reversed(plans)]
        self.running: dict[Any, tuple[int, Plan, int]] = {}  # ref -> (replica, plan, attempt)
        self.pings: dict[Any, int] = {}  # ping ref -> replica
        self.load = [0] * len(replicas)
        self.state = ["up"] * len(replicas)  # "up", "down" (restarting) or "dead"
        self.down_since = [0.0] * len(replicas)
        self.ping_at = [0.0] * len(replicas)
        self.resent = 0
        self.dead_error = getattr(ray.exceptions, "ActorDiedError", ())

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def fill(self) -> None:
        now = time.monotonic()
        for index, state in enumerate(self.state):
            if state == "down" and index not in self.pings.values() and self.ping_at[index] <= now:
                self.pings[self.replicas[index].ping.remote()] = index
        up = [i for i, state in enumerate(self.state) if state == "up"]
        while self.waiting and up:
            index = min(up, key=self.load.__getitem__)
            if self.load[index] >= self.per_replica:
                return
            plan, attempt = self.waiting.pop()
            ref = self.replicas[index].convert.remote(_plan_to_json(plan))
            self.running[ref] = (index, plan, attempt)
            self.load[index] += 1

    def wait(self) -> list[tuple[Plan, dict[str, Any] | None, str | None]]:
        """The documents done since the last call: (plan, entry, None) or, past its
        retries, (plan, None, the error)."""
        if all(state == "dead" for state in self.state):
            given_up, self.waiting = self.waiting, []
            return [(plan, None, "no replica is left") for plan, _ in given_up]
        refs = [*self.running, *self.pings]
        if not refs:  # replicas are down, their next ping is not due yet
            time.sleep(self.PING_EVERY_S)
            return []
        self.ray.wait(refs, num_returns=1, timeout=self.PING_EVERY_S)
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        done = []
        for ref in ready:
            if ref in self.pings:
                self._pinged(self.pings.pop(ref), ref)
                continue
            index, plan, attempt = self.running.pop(ref)
            self.load[index] -= 1
            try:
                done.append((plan, json.loads(self.ray.get(ref)), None))
            except Exception as exc:  # the replica died or was lost, not the conversion
                self._down(index)
                done.extend(self._failed(plan, attempt, exc))
        return done

    def _down(self, index: int) -> None:
        if self.state[index] == "up":
            self.state[index] = "down"
            self.down_since[index] = self.ping_at[index] = time.monotonic()

    def _pinged(self, index: int, ref: Any) -> None:
        now = time.monotonic()
        try:
            self.ray.get(ref)
        except self.dead_error:
            self.state[index] = "dead"
        except Exception:  # still restarting
            self.ping_at[index] = now + self.PING_EVERY_S
            if now - self.down_since[index] > self.DOWN_S:
                self.state[index] = "dead"
        else:
            self.state[index] = "up"

    def _failed(self, plan: Plan, attempt: int, exc: Exception) -> list:
        """Send the document again, or give it up (a one-item list) past its retries."""
        if attempt < MAX_TASK_RETRIES:
            log.warning("%s: its replica was lost (%s); sending it again", plan.path,
                        type(exc).__name__)
            self.waiting.append((plan, attempt + 1))
            self.resent += 1
            return []
        return [(plan, None, type(exc).__name__)]


class Replica:
    """A Ray actor: one `Converter` and one streaming run that its documents join.

    `convert(plan)` (called on many threads at once) converts one document, writes its files
    under `root` and returns its manifest entry as JSON, whatever happens.
    """

    def __init__(self, *, root: str, formats: list[str], options: str,
                 converter_options: dict[str, Any]) -> None:
        self.root = Path(root)
        self.formats = set(formats)
        self.options = options
        self.converter = Converter(**converter_options)
        self.documents = DocumentQueue(self.converter)

    def ping(self) -> bool:
        """Alive (the driver asks after a failure, until Ray has restarted the replica)."""
        return True

    def convert(self, plan_json: str) -> str:
        plan = _plan_from_json(plan_json)
        try:
            document = self.documents.convert(plan.job())
        except Exception as exc:  # the stream broke while it held this document
            log.warning("%s: the stream broke (%s: %s); converting it alone", plan.path,
                        type(exc).__name__, exc)
            entry = self._convert_alone(plan)
        else:
            entry = self._write(plan, document)
        return json.dumps(entry, ensure_ascii=False)

    def _convert_alone(self, plan: Plan) -> dict[str, Any]:
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
    """`Converter.options()` as a replica will have them (they name the engine that loads),
    and its `max_in_flight`.

    Made here when replicas need no GPU; else in a one-off task on a GPU, whose process
    exits afterwards (`max_calls=1`) so the model's memory is freed. Either way bad options
    fail here, before any replica starts."""
    if num_gpus <= 0:
        return _settings(converter_options)
    task = ray.remote(num_gpus=num_gpus, max_calls=1)(_settings)
    return ray.get(task.remote(converter_options))


def _settings(converter_options: dict[str, Any]) -> dict[str, Any]:
    with Converter(**converter_options) as converter:
        return {"options": converter.options(), "max_in_flight": converter.max_in_flight}


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
    except ImportError as exc:
        raise ImportError('convert_with_ray needs Ray: pip install "dsocr-connectors[ray]"') from exc
    return ray
