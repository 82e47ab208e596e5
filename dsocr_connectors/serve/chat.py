"""OpenAI-compatible `POST /v1/chat/completions` and `GET /v1/models`: one page per request.

The request carries one image (an `image_url` part holding a `data:` URL; nothing is ever
fetched from a URL) and the prompt text. As vLLM does for this model, the prompt is the
text after the image placeholder: `"<image>\\n" + text` (a text that already holds
`<image>` is used as it is; no text at all means the grounding Markdown prompt). The
answer keeps the model's special tokens (the grounding tags) in its text.

Fields read: `model` (must be the served name, or absent), `max_tokens` /
`max_completion_tokens`, `stream`, `stream_options.include_usage`, and vLLM's
`return_token_ids` (token ids on the choice and in stream chunks) and `mm_processor_kwargs`
(the resolution mode, as `core_model.engines.vllm_protocol.MODE_PROCESSOR_KWARGS`).
Accepted and not acted on: `temperature` and the other sampling fields (decoding is always
greedy), `vllm_xargs` (the engine applies its own n-gram rule). Refused: more than one
image or choice, other roles than system-less single user turns, and
`skip_special_tokens: true` (this server always keeps them).

Finish reasons: "stop" (EOS), "length" (token limit); a page the engine stopped in a loop
is "length" with `stop_reason: "repetition"`; a page the engine failed is HTTP 500 (in a
stream: an `error` event), with the engine's message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field

from core_model.engines.interface import (
    GROUNDING_MARKDOWN_PROMPT,
    EngineClosed,
    PageRequest,
    PageResult,
)
from core_model.engines.vllm_protocol import MODE_PROCESSOR_KWARGS
from dsocr_connectors.serve.errors import ApiError, error_body
from dsocr_connectors.serve.gate import EngineGate
from dsocr_connectors.serve.options import ServeOptions

router = APIRouter()
log = logging.getLogger("dsocr.serve")


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: str


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None
    image_url: ImageUrl | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of a chat completion request this server reads (others are ignored)."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    skip_special_tokens: bool = False
    return_token_ids: bool = False
    mm_processor_kwargs: dict[str, Any] | None = None
    vllm_xargs: dict[str, Any] | None = None


def read_chat(chat: ChatRequest, options: ServeOptions) -> tuple[str, str, str, int | None]:
    """The image data URL, prompt, mode and token limit of a chat request.

    Raises:
        ApiError: 404 for another model's name, 400 for anything this server cannot honour.
    """
    if chat.model not in (None, options.model_name):
        raise ApiError(404, f"the model {chat.model!r} does not exist; this server serves "
                            f"{options.model_name!r}")
    if chat.skip_special_tokens:
        raise ApiError(400, "skip_special_tokens=true is not supported: the text keeps the "
                            "model's special tokens (its grounding tags)")
    if [m.role for m in chat.messages] != ["user"]:
        raise ApiError(400, "send one user message holding one image and the prompt text "
                            f"(got roles {[m.role for m in chat.messages]})")
    content = chat.messages[0].content
    parts = [ContentPart(type="text", text=content)] if isinstance(content, str) else content or []
    images = [p.image_url.url for p in parts if p.type == "image_url" and p.image_url]
    texts = [p.text for p in parts if p.type == "text" and p.text is not None]
    others = [p.type for p in parts if p.type not in ("image_url", "text")]
    if others:
        raise ApiError(400, f"unsupported content part type(s): {', '.join(others)}")
    if len(images) != 1:
        raise ApiError(400, f"send exactly one image_url part (one page); got {len(images)}")
    text = "\n".join(texts)
    if not text.strip():
        prompt = GROUNDING_MARKDOWN_PROMPT
    else:
        prompt = text if "<image>" in text else "<image>\n" + text
    mode = mode_of(chat.mm_processor_kwargs, options.mode)
    return images[0], prompt, mode, chat.max_completion_tokens or chat.max_tokens


def mode_of(kwargs: dict[str, Any] | None, default: str) -> str:
    """The resolution mode that `mm_processor_kwargs` describe (None: `default`)."""
    if not kwargs:
        return default
    wanted = {k: kwargs[k] for k in ("base_size", "image_size", "crop_mode") if k in kwargs}
    for name, values in MODE_PROCESSOR_KWARGS.items():
        if wanted == values:
            return name
    raise ApiError(400, f"mm_processor_kwargs {kwargs} match no mode; the modes are "
                        + "; ".join(f"{n}: {v}" for n, v in MODE_PROCESSOR_KWARGS.items()))


def decode_image(url: str) -> Image.Image:
    """A `data:image/...;base64,` URL -> an RGB image, EXIF orientation applied.

    Raises:
        ApiError: 400 for other URLs and for data that is not a readable image.
    """
    header, comma, payload = url.partition(",")
    if not (url.startswith("data:") and comma and header.endswith(";base64")):
        raise ApiError(400, "image_url must be a base64 data: URL (data:image/png;base64,...); "
                            "this server fetches nothing")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"image_url: bad base64: {exc}") from exc
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an A4 page
        return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(400, f"image_url: not a readable image: {exc}") from exc


@router.get("/v1/models")
async def list_models(request: Request) -> dict:
    options: ServeOptions = request.app.state.options
    engine = request.app.state.gate.engine
    modes = list(getattr(engine, "supported_modes", None) or MODE_PROCESSOR_KWARGS)
    return {"object": "list", "data": [{
        "id": options.model_name, "object": "model", "created": request.app.state.started,
        "owned_by": "dsocr-connectors",
        "modes": modes,  # the resolution modes it reads (an OpenAIEngine client asks)
    }]}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(chat: ChatRequest, request: Request
                           ) -> JSONResponse | StreamingResponse:
    options: ServeOptions = request.app.state.options
    gate: EngineGate = request.app.state.gate
    url, prompt, mode, max_tokens = read_chat(chat, options)
    gate.check_room()
    image = await asyncio.to_thread(decode_image, url)
    gate.check_room()  # again: others may have come in while the image was decoded
    page = PageRequest(image=image, prompt=prompt, mode=mode, max_new_tokens=max_tokens)
    reply = _Reply(options.model_name, chat.return_token_ids)
    if chat.stream:
        include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
        tokens: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def on_token(token_id: int, delta: str) -> None:  # on the engine's thread
            loop.call_soon_threadsafe(tokens.put_nowait, (token_id, delta))

        future = _submit(gate, page, on_token)  # before the 200: a refusal is still an error
        events = _stream(future, tokens, reply, options.request_timeout, include_usage)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    future = _submit(gate, page)
    try:
        result = await asyncio.wait_for(asyncio.wrap_future(future), options.request_timeout)
    except asyncio.TimeoutError as exc:
        raise ApiError(504, f"no result within {options.request_timeout:g} s") from exc
    except Exception as exc:  # the engine is closed or broken (a bad page is a result)
        raise ApiError(503, f"the engine cannot read pages: {type(exc).__name__}: {exc}"
                       ) from exc
    if result.finish_reason == "error":
        raise ApiError(500, f"the engine failed the page: {result.error}")
    return JSONResponse(reply.completion(result))


def _submit(gate: EngineGate, page: PageRequest, on_token=None) -> Future[PageResult]:
    try:
        return gate.submit(page, on_token=on_token)
    except EngineClosed as exc:
        raise ApiError(503, f"the engine is closed: {exc}") from exc


class _Reply:
    """Builds the response objects of one completion."""

    def __init__(self, model: str, with_token_ids: bool) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.with_token_ids = with_token_ids

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def completion(self, result: PageResult) -> dict[str, Any]:
        finish, stop_reason = finish_of(result)
        choice: dict[str, Any] = {
            "index": 0, "message": {"role": "assistant", "content": result.text},
            "logprobs": None, "finish_reason": finish, "stop_reason": stop_reason,
        }
        if self.with_token_ids:
            choice["token_ids"] = list(result.token_ids)
        return {**self._envelope("chat.completion"), "choices": [choice],
                "usage": usage_of(result), "prompt_token_ids": None}

    def chunk(self, delta: dict[str, Any], *, token_ids: list[int] | None = None,
              finish: str | None = None, stop_reason: str | None = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None,
                                  "finish_reason": finish}
        if finish is not None:
            choice["stop_reason"] = stop_reason
        if self.with_token_ids and token_ids is not None:
            choice["token_ids"] = token_ids
        return {**self._envelope("chat.completion.chunk"), "choices": [choice]}

    def usage_chunk(self, result: PageResult) -> dict[str, Any]:
        return {**self._envelope("chat.completion.chunk"), "choices": [],
                "usage": usage_of(result)}


def finish_of(result: PageResult) -> tuple[str, str | None]:
    """OpenAI's finish reason and vLLM's `stop_reason` for an engine result."""
    if result.finish_reason == "eos":
        return "stop", None
    if result.finish_reason == "repetition":
        return "length", "repetition"
    return "length", None


def usage_of(result: PageResult) -> dict[str, int]:
    return {"prompt_tokens": result.num_prompt_tokens,
            "completion_tokens": result.num_output_tokens,
            "total_tokens": result.num_prompt_tokens + result.num_output_tokens}


def _sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


async def _stream(future: Future[PageResult], queue: asyncio.Queue[tuple[int, str] | None],
                  reply: _Reply, timeout: float, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events: a role chunk, text deltas as the engine makes them (`queue`, fed
    by `on_token`), the finish."""
    loop = asyncio.get_running_loop()
    done = asyncio.wrap_future(future)
    done.add_done_callback(lambda _: queue.put_nowait(None))  # after every token already sent
    deadline = loop.time() + timeout
    streamed: list[str] = []
    pending_ids: list[int] = []  # ids of tokens whose text is not out yet (a split character)
    num_ids = 0  # ids seen through on_token
    try:
        yield _sse(reply.chunk({"role": "assistant", "content": ""}))
        is_open = True
        while is_open:
            item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
            items = [item]
            while not queue.empty():  # send what has piled up as one chunk
                items.append(queue.get_nowait())
            is_open = items[-1] is not None
            tokens = [i for i in items if i is not None]
            ids = [t for t, _ in tokens if t >= 0]
            num_ids += len(ids)
            pending_ids.extend(ids)
            text = "".join(delta for _, delta in tokens)
            if text:
                streamed.append(text)
                yield _sse(reply.chunk({"content": text}, token_ids=pending_ids))
                pending_ids = []
        result = done.result()
        if result.finish_reason == "error":
            yield _sse(error_body(500, f"the engine failed the page: {result.error}"))
            yield _sse("[DONE]")
            return
        sent = "".join(streamed)
        rest = result.text[len(sent):]
        if not result.text.startswith(sent):
            log.warning("streamed text differs from the page's text; the rest is not sent")
            rest = ""
        pending_ids.extend(result.token_ids[num_ids:])  # all of them from a batch-only engine
        finish, stop_reason = finish_of(result)
        yield _sse(reply.chunk({"content": rest} if rest else {}, token_ids=pending_ids,
                               finish=finish, stop_reason=stop_reason))
        if include_usage:
            yield _sse(reply.usage_chunk(result))
        yield _sse("[DONE]")
    except asyncio.TimeoutError:
        yield _sse(error_body(504, f"no result within {timeout:g} s"))
        yield _sse("[DONE]")
    except Exception as exc:  # the engine is closed or broken (a bad page is a result)
        yield _sse(error_body(503, f"the engine cannot read pages: {type(exc).__name__}: {exc}"))
        yield _sse("[DONE]")
    finally:
        future.cancel()  # the client left or time ran out: withdraw the page if not started
