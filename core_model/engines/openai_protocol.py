"""A page as an OpenAI-compatible chat completion, and the reply as a `PageResult`.

The request: one user message holding the page (prepared as in every engine, then PNG) as a
base64 data URL, then the prompt text with its `<image>` placeholder removed (the server's
chat handling puts the placeholder for the image part first, followed by a newline, which
gives back the usual "<image>\\n..." prompt). Greedy decoding, `max_tokens`, and vLLM's extra
fields: `skip_special_tokens: false` (keep the grounding tags), `vllm_xargs` (the n-gram
rule of `NGramPerReqLogitsProcessor`, when the server loaded it), `return_token_ids`, and
`mm_processor_kwargs` only for a server declared to honour them. Servers that do not know a
field ignore it. A reply that does not have the expected shape raises ValueError.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from core_model.engines.interface import PageRequest, PageResult, PageTokenCallback
from core_model.engines.loop_detect import LoopDetector
from core_model.engines.vllm_protocol import count_image_tokens, judge_finish, strip_eos
from core_model.page_image import normalize_page_image


def chat_text(prompt: str) -> str:
    """The prompt without its `<image>` placeholder (and the newline right after it)."""
    return prompt.replace("<image>\n", "", 1).replace("<image>", "")


def image_data_url(image: Any, image_format: str = "PNG") -> str:
    """A page image, prepared as every engine prepares it, as a `data:` URL.

    PNG (lossless; the fastest zlib level: scans barely compress at any level, and text
    pages come out within 5% of the default size) or JPEG at quality 95 (lossy, several
    times smaller and faster for photographed or noisy scans).
    """
    buf = io.BytesIO()
    jpeg = image_format.upper() in ("JPG", "JPEG")
    options = {"quality": 95} if jpeg else {"compress_level": 1}
    normalize_page_image(image).save(buf, format="JPEG" if jpeg else image_format, **options)
    mime = "jpeg" if jpeg else image_format.lower()
    return f"data:image/{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def chat_request_body(
    request: PageRequest,
    *,
    model: str,
    max_tokens: int,
    stream: bool = False,
    xargs: dict[str, Any] | None = None,
    mode_kwargs: dict[str, Any] | None = None,
    extra_body: dict[str, Any] | None = None,
    image_format: str = "PNG",
) -> dict[str, Any]:
    """The JSON body of one page's chat completion request."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_data_url(request.image, image_format)}},
            {"type": "text", "text": chat_text(request.prompt)},
        ]}],
        "temperature": 0.0,
        "max_tokens": max_tokens,
        "skip_special_tokens": False,
        "return_token_ids": True,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if xargs is not None:
        body["vllm_xargs"] = xargs
    if mode_kwargs is not None:
        body["mm_processor_kwargs"] = mode_kwargs
    body.update(extra_body or {})
    return body


def result_from_reply(reply: Any, loop_detector: LoopDetector | None = None) -> PageResult:
    """A chat completion reply (vLLM's extra `token_ids`, `prompt_token_ids` used when
    present) as a `PageResult`.

    Raises:
        ValueError: the reply does not have the shape of a chat completion.
    """
    try:
        choice = reply["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        token_ids = [int(t) for t in choice.get("token_ids") or []]
        prompt_ids = [int(t) for t in reply.get("prompt_token_ids") or []]
        usage = reply.get("usage") or {}
        reason, error = judge_finish(
            choice.get("finish_reason"), token_ids, loop_detector, server="the server"
        )
        return PageResult(
            text=strip_eos(str(text)),
            token_ids=token_ids,
            finish_reason=reason,
            num_vision_tokens=count_image_tokens(prompt_ids),
            num_prompt_tokens=int(usage.get("prompt_tokens") or len(prompt_ids)),
            num_output_tokens=int(usage.get("completion_tokens") or len(token_ids)),
            error=error,
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"bad reply: {type(exc).__name__}: {exc}") from exc


class StreamedReply:
    """A streamed page: its events gathered into one reply, each text delta passed on."""

    def __init__(self, on_token: PageTokenCallback):
        self.on_token = on_token
        self.parts: list[str] = []
        self.token_ids: list[int] = []
        self.finish: str | None = None
        self.usage: dict = {}
        self.prompt_ids: list[int] | None = None

    def on_event(self, event: dict) -> bool:
        """Take one event; True once a delta went to `on_token`.

        Raises:
            ValueError: an error event, an event of the wrong shape, or `on_token` failed.
        """
        if event.get("error"):
            raise ValueError(f"server error in stream: {event['error']}")
        deltas = []
        try:
            self.usage = event.get("usage") or self.usage
            self.prompt_ids = event.get("prompt_token_ids") or self.prompt_ids
            for choice in event.get("choices") or []:
                ids = [int(t) for t in choice.get("token_ids") or []]
                self.token_ids.extend(ids)
                self.finish = choice.get("finish_reason") or self.finish
                deltas.append((str((choice.get("delta") or {}).get("content") or ""), ids))
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"bad reply: an event of the wrong shape: {event!r:.200}") from exc
        delivered = False
        for delta, ids in deltas:
            if not delta:
                continue
            self.parts.append(delta)
            delivered = True
            try:
                self.on_token(ids[-1] if ids else -1, delta)
            except Exception as exc:
                raise ValueError(f"on_token callback failed: {type(exc).__name__}: {exc}") from exc
        return delivered

    def reply(self) -> dict:
        """The gathered page in the shape of a non-streamed reply."""
        return {
            "choices": [{"message": {"content": "".join(self.parts)},
                         "finish_reason": self.finish, "token_ids": self.token_ids}],
            "usage": self.usage,
            "prompt_token_ids": self.prompt_ids,
        }
