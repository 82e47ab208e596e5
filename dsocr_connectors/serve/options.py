"""`ServeOptions`: the limits and defaults of one `dsocr serve` process, as one dataclass."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeOptions:
    """What the server allows and assumes; `dsocr serve` fills it from its flags.

    Attributes:
        model_name: the name `/v1/models` lists and chat requests must name (a request
            without `model` gets it too).
        api_key: when set, every `/v1/` route needs `Authorization: Bearer <api_key>`.
        mode: the resolution mode of chat requests that send no `mm_processor_kwargs`.
        max_upload_bytes: largest request body; a bigger one is refused (413) before it is read.
        max_pages: most pages one conversion may select (413 past it).
        request_timeout: seconds a synchronous request may take (504 past it).
        max_queue: pages that may wait beyond what the engine works on at once; a request
            arriving when that many wait is refused (429 with Retry-After).
        sync_pages: a conversion of more pages than this becomes a job (202) unless the
            client asks otherwise with the `async` field.
        max_jobs: jobs held at once, queued, running or finished and not yet expired (429 past it).
        job_ttl: seconds a finished job's result is kept.
        convert_workers: conversions running at once (threads; each waits on the engine).
        pages_per_conversion: pages one conversion keeps submitted to the engine (its
            `Converter` batch size), so a long document leaves room for other requests.
        upload_dir: where uploads are spooled (None: the system temp folder).
    """

    model_name: str = "deepseek-ocr"
    api_key: str | None = None
    mode: str = "gundam"
    max_upload_bytes: int = 100 * 2**20
    max_pages: int = 500
    request_timeout: float = 600.0
    max_queue: int = 256
    sync_pages: int = 16
    max_jobs: int = 16
    job_ttl: float = 3600.0
    convert_workers: int = 32
    pages_per_conversion: int = 16
    upload_dir: str | None = None
