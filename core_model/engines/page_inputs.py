"""What a page needs before its prefill: prepared pixels, vision tokens and the prompt ids.

Pixels are prepared in worker threads ahead of admission: resized, padded and tiled on the GPU
where the page's RGB pixels are at hand (`device_views.py`), else on the CPU (PIL releases the
GIL; a lazy image that pickles, such as a pixel file, goes on to a preparing process:
`preparing.py`), as uint8 so a quarter of the bytes cross to the GPU, pinned there for
asynchronous copies; the look-ahead is bounded so prepared tensors never pile up in host memory. Between
decode steps, groups of pages whose pixels are ready go through the DeepEncoder (full calls:
`encode_ready`), and each page's prompt is built with its count of vision positions: a page
is then ready to be admitted (prefilled). A page that fails at any step gets an error
result; the others go on. An encoder call that runs out of GPU memory (activations beside
the KV cache) is tried again in calls of half as many views, down to one, before its pages
fail.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from functools import partial
from typing import Any

import torch

from core_model.engines.preparing import PreparingProcesses
from core_model.engines.sequence import Sequence
from core_model.page_image import load_page_image
from core_model.prompt import build_prompt_ids

log = logging.getLogger(__name__)

SMALL_CALL = 4  # pages: an encoder call this small is counted apart in the stats


def pixels_for(prepare: Callable[..., Any], image: Any, mode: str, pin: bool,
               processes: PreparingProcesses | None = None,
               on_device: Callable[[Any, str], Any] | None = None) -> Any:
    """A page's ImageInput with uint8 pixels (`prepare`: the model's `prepare_image`, which
    knows its family's modes), pinned for an asynchronous copy to the GPU. `on_device` makes
    the views on the GPU where it can (`device_views.py`; None where it cannot); else a lazy
    image (`LazyImage`) goes to a preparing process where there are some (`preparing.py`),
    else it is read here, on the preparing thread."""
    prepared = on_device(image, mode) if on_device is not None else None
    if prepared is not None:
        return prepared
    prepared = processes.prepare(image, mode) if processes is not None else None
    if prepared is None:
        prepared = prepare(load_page_image(image), mode, normalize=False)
    if pin:
        prepared.global_view = prepared.global_view.pin_memory()
        if prepared.tiles is not None:
            prepared.tiles = prepared.tiles.pin_memory()
    return prepared


def start_preparing(
    pool: Executor, prepare: Callable[..., Any], waiting: Iterable[Sequence], lookahead: int, *,
    pin: bool, processes: PreparingProcesses | None = None,
    on_device: Callable[[Any, str], Any] | None = None,
) -> None:
    """Submit the pixels of the next `lookahead` waiting pages to `pool`, once each (see
    `pixels_for`)."""
    for seq in itertools.islice(waiting, lookahead):
        if seq.page_image is not None and seq.pending_image is None:
            seq.pending_image = pool.submit(pixels_for, prepare, seq.page_image, seq.mode, pin,
                                            processes, on_device)
            seq.pending_image.add_done_callback(partial(_prepared, seq))
            seq.page_image = None


def _prepared(seq: Sequence, _: Any) -> None:
    seq.pixels_at = time.perf_counter()


@torch.inference_mode()  # no autograd graph: it would keep every activation alive
def encode_ready(
    model: Any, tokenizer: Any, waiting: Iterable[Sequence], *, max_views_per_call: int,
    wait_s: float | None = None, stats: dict | None = None,
) -> float:
    """Encode and build the prompts of the next waiting pages whose pixels are prepared (or
    that have no image): a group of `max_views_per_call` pages, so the encoder's calls are
    full (a page has one global view; Gundam tiles go in calls of their own size). With
    `wait_s` (pages are decoding meanwhile), a smaller group waits until its first page's
    pixels have been ready that long, and only while more pages are on their way (being
    prepared): the last pages of a stream go at once. Returns the encoder's seconds; `stats` (the engine's)
    also gets its calls, the host's seconds launching them and, on CUDA, the device's
    seconds from the first kernel to the last (`encode_calls`, `encode_launch_s`,
    `encode_gpu_s`)."""
    group, coming = [], False
    for s in waiting:
        if not s.needs_inputs:
            continue
        if s.page_image is not None or (s.pending_image is not None and not s.pending_image.done()):
            coming = True
            continue
        group.append(s)
        if len(group) == max_views_per_call:
            break
    if not group or (wait_s is not None and coming and len(group) < max_views_per_call
                     and time.perf_counter() - min(s.pixels_at for s in group) < wait_s):
        return 0.0
    spent = encode_and_build_prompts(model, tokenizer, group, max_views_per_call=max_views_per_call,
                                     stats=stats)
    now = time.perf_counter()
    for s in group:
        s.ready_at = now
    return spent


def encode_and_build_prompts(
    model: Any, tokenizer: Any, seqs: list[Sequence], *, max_views_per_call: int | None,
    stats: dict | None = None,
) -> float:
    """Encode the group's images in one DeepEncoder call and build each prompt; pages that
    cannot be read fail with the reason. Returns the encoder's seconds."""
    for s in seqs:
        if s.pending_image is None:
            continue
        t0 = time.perf_counter()
        try:
            s.image = s.pending_image.result()
        except Exception as exc:  # one bad page never stops the others
            s.fail(f"page {s.index}: cannot prepare the image: {exc}")
        s.pending_image = None
        s.timings["preprocess_wait"] = time.perf_counter() - t0
    spent = _encode([s for s in seqs if s.image is not None and s.vision_embeds is None],
                    model, max_views_per_call, stats)
    for s in seqs:
        if s.is_finished or s.prompt_ids is not None:
            continue
        n = 0 if s.vision_embeds is None else s.vision_embeds.shape[0]
        try:
            built = build_prompt_ids(tokenizer, s.prompt, n)
        except Exception as exc:  # a prompt the tokenizer cannot take fails its page only
            s.fail(f"page {s.index}: cannot build the prompt: {type(exc).__name__}: {exc}")
            continue
        s.prompt_ids, s.image_mask = list(built.ids), list(built.image_mask)
    return spent


def fit_to_slot(seqs: list[Sequence], max_len: int) -> None:
    """Cap each page's output at what its KV-cache slot holds after the prompt; a page whose
    prompt leaves no room fails with the reason."""
    for s in seqs:
        if s.is_finished:
            continue
        s.num_vision_tokens = sum(s.image_mask) if s.image_mask else 0
        s.max_new_tokens = min(s.max_new_tokens, max_len - s.num_prompt_tokens)
        if s.max_new_tokens < 1:
            s.fail(
                f"page {s.index}: prompt of {s.num_prompt_tokens} tokens leaves no room "
                f"in a KV-cache slot of {max_len} tokens"
            )


def _encode_shrinking(images: list, model: Any, views: int | None) -> list[torch.Tensor]:
    """`model.encode_images`; a call out of GPU memory (activations beside the KV cache) is
    tried again with half as many views a call, down to one."""
    views = views or sum(1 + (0 if i.tiles is None else len(i.tiles)) for i in images)
    while True:
        try:
            return model.encode_images(images, max_views_per_call=views)
        except torch.cuda.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if views == 1:
                raise
            log.warning("DeepEncoder out of memory at %d views a call; trying %d", views, views // 2)
            views //= 2


def _encode(seqs: list[Sequence], model: Any, max_views_per_call: int | None,
            stats: dict | None = None) -> float:
    if not seqs:
        return 0.0
    device = next(model.parameters()).device
    cuda = device.type == "cuda"
    if cuda:
        first, last = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        first.record()
    t0 = time.perf_counter()
    try:
        embeds = _encode_shrinking([s.image for s in seqs], model, max_views_per_call)
    except Exception as exc:  # these pages fail, the engine goes on
        for s in seqs:
            s.fail(f"page {s.index}: vision encoder failed: {exc}")
        embeds = []
    launched = time.perf_counter()
    if cuda:
        last.record()
        last.synchronize()  # the time measured is the encoder's own
    spent = time.perf_counter() - t0
    if stats is not None:
        stats["encode_calls"] = stats.get("encode_calls", 0) + 1
        stats["encode_launch_s"] = stats.get("encode_launch_s", 0.0) + launched - t0
        if len(seqs) <= SMALL_CALL:  # lone pages (figure re-reads, reruns): launch-bound
            stats["encode_small_calls"] = stats.get("encode_small_calls", 0) + 1
            stats["encode_small_s"] = stats.get("encode_small_s", 0.0) + spent
        if cuda:
            stats["encode_gpu_s"] = stats.get("encode_gpu_s", 0.0) + first.elapsed_time(last) / 1000
    for s, e in zip(seqs, embeds, strict=False):
        s.vision_embeds, s.timings["encode"] = e, spent / len(seqs)
        s.image = None
    return spent
