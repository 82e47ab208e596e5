"""`POST /v1/convert` and the job routes: a PDF or image in, the `Document` out.

The request is `multipart/form-data` with the file in the field `file` and `Converter`
options as further fields (`uploads.FIELDS`). The answer is the Document JSON, or its
Markdown when the `Accept` header asks for `text/markdown`; the header
`X-Dsocr-Pages-Failed` says how many pages failed (their reasons are in the JSON). A file of
more than `sync_pages` selected pages, or any file sent with `async=true`, becomes a job
instead: `202` with `Location: /v1/jobs/{id}`; poll that for progress, read
`/v1/jobs/{id}/result` when it is done, `DELETE` it to cancel. `async=false` keeps any file
synchronous.

Each conversion is a `Converter` over a `RequestEngine` (the shared engine), run in a worker
thread: the pages of all requests meet in the engine's batch. The conversion machinery
(`uploads.py`: loaders, pymupdf, the pipeline) is imported on the first conversion.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from dsocr_connectors.document import Document, Page
from dsocr_connectors.serve.errors import ApiError
from dsocr_connectors.serve.gate import EngineGate, RequestEngine
from dsocr_connectors.serve.jobs import Job, JobStore, num_failed
from dsocr_connectors.serve.options import ServeOptions

router = APIRouter()

MARKDOWN = "text/markdown"


@router.post("/v1/convert", response_model=None)
async def convert(request: Request) -> Response:
    """Convert the uploaded file (see the module docstring)."""
    from dsocr_connectors.serve import uploads

    state = request.app.state
    options: ServeOptions = state.options
    gate: EngineGate = state.gate
    gate.check_room()
    path, label, settings = await _receive(request, options)
    try:
        try:
            selected = await asyncio.to_thread(uploads.select_pages, path, label,
                                               settings.pages, settings.password)
        except uploads.loaders.LoaderError as exc:
            raise ApiError(422, f"cannot read the file: {exc}") from None
        except ValueError as exc:
            raise ApiError(400, f"pages={settings.pages!r}: {exc}") from None
        if len(selected) > options.max_pages:
            raise ApiError(413, f"{label}: {len(selected)} pages selected; this server converts "
                                f"at most {options.max_pages} per request (use the pages field)")
        engine = RequestEngine(gate, concurrency=options.pages_per_conversion)
        converter = uploads.make_converter(engine, settings, selected,
                                           options.pages_per_conversion)
        if settings.run_async == "true" or (
                settings.run_async == "auto" and len(selected) > options.sync_pages):
            job = _start_job(state, converter, path, label, len(selected))
            path = None  # the job owns the file now
            return JSONResponse(job.status(), status_code=202,
                                headers={"Location": f"/v1/jobs/{job.id}"})
        gate.check_room()
        task = state.executor.submit(uploads.convert_file, converter, path, label)
        _discard_if_cancelled(task, path)
        path = None  # convert_file deletes it
        try:
            document = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(task)),
                                              options.request_timeout)
        except asyncio.TimeoutError:
            engine.cancel(f"the request timed out after {options.request_timeout:g} s")
            raise ApiError(504, f"{label}: not converted within {options.request_timeout:g} s; "
                                "send large files with async=true") from None
        return await asyncio.to_thread(document_response, document,
                                       request.headers.get("accept", ""))
    finally:
        if path is not None:
            uploads.discard(path)


async def _receive(request: Request, options: ServeOptions) -> tuple[Path, str, Any]:
    """The uploaded file (spooled under our name), its label, and the checked settings."""
    from dsocr_connectors.serve import uploads

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "send the file as multipart/form-data in the field 'file'")
    form = await request.form(max_files=1, max_fields=len(uploads.FIELDS) + 1,
                              max_part_size=uploads.MAX_FIELD_BYTES)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "no file: send it in the multipart field 'file'")
        fields = {k: v for k, v in form.multi_items() if k != "file" and isinstance(v, str)}
        settings = uploads.ConvertSettings.from_form(fields)
        label = uploads.file_label(upload.filename)
        path = await asyncio.to_thread(uploads.spool, upload.file, label, options.upload_dir)
    finally:
        await form.close()
    return path, label, settings


def _start_job(state: Any, converter: Any, path: Path, label: str, num_pages: int) -> Job:
    """Hold a job for this conversion and start it in a worker thread (429 when full)."""
    from dsocr_connectors.serve.uploads import convert_file

    jobs: JobStore = state.jobs
    job = Job(filename=label, num_pages=num_pages, engine=converter.engine)
    if not jobs.add(job):
        state.metrics.rejected.labels("jobs_full").inc()
        raise ApiError(429, f"{jobs.max_jobs} jobs are held; retry when one has finished "
                            "or expired", headers={"Retry-After": "10"})

    def on_page(page: Page) -> None:
        job.num_done += 1

    def run() -> None:
        jobs.set_state(job, "running")
        try:
            document = convert_file(converter, path, label, on_page)
        except Exception as exc:  # a broken loader thread: the job says so
            jobs.set_state(job, "failed", error=f"{type(exc).__name__}: {exc}")
        else:
            jobs.set_state(job, "done", document=document)

    try:
        _discard_if_cancelled(state.executor.submit(run), path)
    except RuntimeError:  # shutting down
        jobs.remove(job.id)
        raise ApiError(503, "the server is shutting down") from None
    return job


def _discard_if_cancelled(task: Future, path: Path) -> None:
    """Delete the upload of a conversion that never ran (cancelled at shutdown)."""
    from dsocr_connectors.serve.uploads import discard

    task.add_done_callback(lambda f: discard(path) if f.cancelled() else None)


def document_response(document: Document, accept: str) -> Response:
    """The document as JSON, or as Markdown when `accept` asks for text/markdown."""
    headers = {"X-Dsocr-Pages-Failed": str(num_failed(document))}
    if MARKDOWN in accept:
        return Response(document.to_markdown(), media_type=f"{MARKDOWN}; charset=utf-8",
                        headers=headers)
    return Response(document.to_json(indent=None), media_type="application/json",
                    headers=headers)


def _job(request: Request, job_id: str) -> Job:
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id!r} (finished jobs expire after "
                            f"{request.app.state.options.job_ttl:g} s)")
    return job


@router.get("/v1/jobs/{job_id}", response_model=None)
async def job_status(job_id: str, request: Request) -> Response:
    """A job's state and progress; with the document once it is done."""
    job = _job(request, job_id)
    body = await asyncio.to_thread(lambda: json.dumps(job.status(), ensure_ascii=False))
    return Response(body, media_type="application/json")


@router.get("/v1/jobs/{job_id}/result", response_model=None)
async def job_result(job_id: str, request: Request) -> Response:
    """The finished job's document, as JSON or Markdown (409 before it is done)."""
    job = _job(request, job_id)
    if job.document is None:
        raise ApiError(409, f"job {job_id} is {job.state}"
                            + (f": {job.error}" if job.error else ""))
    return await asyncio.to_thread(document_response, job.document,
                                   request.headers.get("accept", ""))


@router.delete("/v1/jobs/{job_id}")
async def job_delete(job_id: str, request: Request) -> dict:
    """Cancel the job if it runs (its pages not yet read fail) and forget it."""
    jobs: JobStore = request.app.state.jobs
    job = _job(request, job_id)
    jobs.set_state(job, "cancelled", error="cancelled by the client")
    job.engine.cancel("the job was cancelled")
    jobs.remove(job_id)
    return {"id": job_id, "object": "job", "deleted": True}


def make_executor(options: ServeOptions) -> ThreadPoolExecutor:
    """The threads conversions run in."""
    return ThreadPoolExecutor(options.convert_workers, thread_name_prefix="dsocr-convert")
