"""The OpenAI-compatible engine: pages sent to a server such as `vllm serve`.

One chat completion per page: the image as a base64 data URL, then the prompt text with
its `<image>` placeholder removed (the server's chat handling inserts the placeholder for
the image part; vLLM puts it first, followed by a newline, which gives back the usual
"<image>\\n..." prompt). Greedy decoding (temperature 0), `max_tokens`, and vLLM's extra
fields: `skip_special_tokens: false` (keep the grounding tags), `vllm_xargs` (the n-gram rule
of `NGramPerReqLogitsProcessor`, when the server loaded it), `mm_processor_kwargs` (the
resolution mode) and `return_token_ids`. Servers that do not know a field ignore it.

Only the standard library is used (urllib, a thread pool). A page that fails (HTTP error,
timeout, bad JSON) gets finish_reason "error" and the message; the other pages are not
affected.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core_model.engines.interface import PageRequest, PageResult, TokenCallback
from core_model.engines.loop_detect import LoopDetector
from core_model.engines.ngram import TABLE_CELL_IDS, VLLM_NGRAM_SIZE, VLLM_WINDOW
from core_model.engines.vllm_engine import (
    EOS_TEXT,
    IMAGE_TOKEN_ID,
    judge_finish,
    mode_processor_kwargs,
    ngram_extra_args,
)


def chat_text(prompt: str) -> str:
    """The prompt without its `<image>` placeholder (and the newline right after it)."""
    return prompt.replace("<image>\n", "", 1).replace("<image>", "")


def image_data_url(image: Any, image_format: str = "PNG") -> str:
    """A PIL image as a `data:` URL (PNG by default: lossless)."""
    buf = io.BytesIO()
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    rgb.save(buf, format=image_format)
    mime = "jpeg" if image_format.upper() in ("JPG", "JPEG") else image_format.lower()
    return f"data:image/{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def iter_sse_data(lines: Iterator[bytes]) -> Iterator[dict]:
    """The JSON objects of a server-sent-event stream (`data: {...}` lines, until [DONE])."""
    for raw in lines:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


class OpenAIEngine:
    """DeepSeek-OCR served behind an OpenAI-compatible chat completions endpoint.

    Args:
        base_url: the API root as for the OpenAI client, e.g. "http://localhost:8000/v1"
            (a full ".../chat/completions" URL is accepted too).
        model: the served model name, e.g. "deepseek-ai/DeepSeek-OCR".
        api_key: bearer token; default: the OPENAI_API_KEY environment variable, if set.
        timeout: seconds per page request.
        max_concurrency: pages in flight at once.
        max_new_tokens: default output limit per page.
        ngram_size, ngram_window, whitelist_ids: sent as `vllm_xargs` for vLLM's
            NGramPerReqLogitsProcessor (None: not sent).
        send_mode: send the mode's `mm_processor_kwargs`.
        loop_detector: labels pages that ran to the limit in a loop "repetition" when the
            server returns token ids (None: off).
        extra_body: more fields merged into every request body.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 600.0,
        max_concurrency: int = 8,
        *,
        max_new_tokens: int = 8192,
        ngram_size: int | None = VLLM_NGRAM_SIZE,
        ngram_window: int = VLLM_WINDOW,
        whitelist_ids: Sequence[int] = TABLE_CELL_IDS,
        send_mode: bool = True,
        loop_detector: LoopDetector | None = None,
        extra_body: dict[str, Any] | None = None,
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.base_url = base_url
        self.url = base_url.rstrip("/")
        if not self.url.endswith("/chat/completions"):
            self.url += "/chat/completions"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.max_new_tokens = max_new_tokens
        self.xargs = ngram_extra_args(ngram_size, ngram_window, whitelist_ids)
        self.send_mode = send_mode
        self.loop_detector = loop_detector if loop_detector is not None else LoopDetector()
        self.extra_body = dict(extra_body or {})
        self._callback_lock = threading.Lock()

    def request_body(self, request: PageRequest, *, stream: bool = False) -> dict[str, Any]:
        """The JSON body of one page's chat completion request."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": image_data_url(request.image)}},
                        {"type": "text", "text": chat_text(request.prompt)},
                    ],
                }
            ],
            "temperature": 0.0,
            "max_tokens": request.max_new_tokens or self.max_new_tokens,
            "skip_special_tokens": False,
            "return_token_ids": True,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if self.xargs is not None:
            body["vllm_xargs"] = self.xargs
        if self.send_mode:
            body["mm_processor_kwargs"] = mode_processor_kwargs(request.mode)
        body.update(self.extra_body)
        return body

    def generate(
        self, requests: Sequence[PageRequest], *, on_token: TokenCallback | None = None
    ) -> list[PageResult]:
        """Read every page (concurrently); results in request order.

        With `on_token` the pages are streamed and the callback gets each text delta as it
        arrives (token id -1 unless the server sends ids); calls are serialised.
        """
        if not requests:
            return []
        workers = min(self.max_concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dsocr-openai") as pool:
            futures = [
                pool.submit(self._read_page, i, request, on_token)
                for i, request in enumerate(requests)
            ]
            return [f.result() for f in futures]

    def _read_page(
        self, index: int, request: PageRequest, on_token: TokenCallback | None
    ) -> PageResult:
        start = time.perf_counter()
        try:
            body = self.request_body(request, stream=on_token is not None)
        except (ValueError, OSError) as exc:
            return self._error(index, request, f"cannot prepare the request: {exc}")
        encoded = time.perf_counter()
        try:
            if on_token is None:
                reply = self._post(body)
                result = self._result_from_reply(reply)
            else:
                result = self._stream(index, body, on_token)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            return self._error(index, request, f"HTTP {exc.code} {exc.reason}: {detail}")
        except (TimeoutError, urllib.error.URLError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
                return self._error(index, request, f"timed out after {self.timeout:g} s")
            return self._error(index, request, f"cannot reach {self.url}: {reason}")
        except (
            ValueError,
            KeyError,
            IndexError,
            TypeError,
            OSError,
            http.client.HTTPException,
        ) as exc:
            return self._error(index, request, f"bad reply: {type(exc).__name__}: {exc}")
        except Exception as exc:  # the contract: one bad page never fails the batch
            return self._error(index, request, f"unexpected {type(exc).__name__}: {exc}")
        result.key = request.key
        result.timings = {
            "encode": encoded - start,
            "request": time.perf_counter() - encoded,
        }
        return result

    def _open(self, body: dict[str, Any]):
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(
            self.url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        return urllib.request.urlopen(req, timeout=self.timeout)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._open(body) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def _stream(self, index: int, body: dict[str, Any], on_token: TokenCallback) -> PageResult:
        parts: list[str] = []
        token_ids: list[int] = []
        finish, usage, prompt_ids = None, {}, None
        with self._open(body) as resp:
            for chunk in iter_sse_data(iter(resp.readline, b"")):
                if chunk.get("error"):
                    raise ValueError(f"server error in stream: {chunk['error']}")
                usage = chunk.get("usage") or usage
                prompt_ids = chunk.get("prompt_token_ids") or prompt_ids
                for choice in chunk.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content") or ""
                    ids = choice.get("token_ids") or []
                    token_ids.extend(int(t) for t in ids)
                    finish = choice.get("finish_reason") or finish
                    if delta:
                        parts.append(delta)
                        with self._callback_lock:
                            on_token(index, int(ids[-1]) if ids else -1, delta)
        reply = {
            "choices": [
                {
                    "message": {"content": "".join(parts)},
                    "finish_reason": finish,
                    "token_ids": token_ids,
                }
            ],
            "usage": usage,
            "prompt_token_ids": prompt_ids,
        }
        return self._result_from_reply(reply)

    def _result_from_reply(self, reply: dict[str, Any]) -> PageResult:
        choice = reply["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        if text.endswith(EOS_TEXT):
            text = text[: -len(EOS_TEXT)]
        token_ids = [int(t) for t in choice.get("token_ids") or []]
        prompt_ids = reply.get("prompt_token_ids") or []
        usage = reply.get("usage") or {}
        reason, error = judge_finish(choice.get("finish_reason"), token_ids, self.loop_detector,
                                     server="the server")
        return PageResult(
            text=text,
            token_ids=token_ids,
            finish_reason=reason,
            num_vision_tokens=sum(1 for t in prompt_ids if t == IMAGE_TOKEN_ID),
            num_prompt_tokens=int(usage.get("prompt_tokens") or len(prompt_ids)),
            num_output_tokens=int(usage.get("completion_tokens") or len(token_ids)),
            error=error,
        )

    def _error(self, index: int, request: PageRequest, message: str) -> PageResult:
        where = f"page {index}" if request.key is None else f"page {index} ({request.key})"
        return PageResult(
            text="", finish_reason="error", error=f"{where}: {message}", key=request.key
        )
