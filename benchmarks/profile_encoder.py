"""Where the DeepEncoder's time goes, and what would cut it (GPU; full size, random bf16).

For calls of 32 views of 1024 px (Base's global view, Gundam's) and of 640 px (Gundam's
tiles):
1. ms a view for the whole encoder, SAM's windowed blocks, its global blocks, the neck and
   compressor, CLIP, the projector (eager, as the engine runs them);
2. the top CUDA kernels of one 1024-px call;
3. SAM's global attention alone: building the extended query/key/value, fused SDPA on them
   (default, cuDNN) and, with --flex, FlexAttention with the relative-position bias as a
   score modification (head size 64);
4. with --compile, the encoder under `torch.compile` (compile seconds, then ms a view).

    PYTHONPATH=. python3 -m benchmarks.profile_encoder --out encoder.json
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

from benchmarks.profile_engine import cuda_ms
from benchmarks.throughput import random_model
from core_model.config import DeepseekOCRConfig
from core_model.deep_encoder import encode_views
from core_model.sam import relative_position_table

FLEX = False


def timed(fn) -> float:
    """ms per call (CUDA events, 5 calls after a first untimed one)."""
    return cuda_ms(fn, reps=5)


def parts(model, pixels: torch.Tensor) -> dict:
    """ms per view of each part of the encoder, eager."""
    sam, clip, projector = model.model.sam_model, model.model.vision_model, model.model.projector
    B = len(pixels)
    out: dict = {"views": B, "side": pixels.shape[-1]}
    out["encoder_ms_per_view"] = timed(lambda: encode_views(sam, clip, projector, pixels)) / B
    x = sam.patch_embed(pixels)  # (B, h, w, width); the position embedding does not change the work
    windowed = [b for b in sam.blocks if b.window_size]
    global_ = [b for b in sam.blocks if not b.window_size]
    out["sam_windowed_ms_per_view"] = timed(lambda: [b(x) for b in windowed]) / B
    out["sam_global_ms_per_view"] = timed(lambda: [b(x) for b in global_]) / B
    g = global_[0]
    h = g.norm1(x)
    out["sam_global_attention_ms_per_view"] = timed(lambda: g.attn(h)) * len(global_) / B
    feats = sam(pixels)
    neck_in = x.permute(0, 3, 1, 2)
    out["sam_neck_ms_per_view"] = timed(lambda: sam.net_3(sam.net_2(sam.neck(neck_in)))) / B
    out["clip_ms_per_view"] = timed(lambda: clip(pixels, feats)) / B
    cf = clip(pixels, feats)[:, 1:]
    st = feats.flatten(2).transpose(1, 2)
    out["projector_ms_per_view"] = timed(lambda: projector(torch.cat([cf, st], dim=-1))) / B
    return out


def attention_variants(attn, x: torch.Tensor) -> dict:
    """SAM's global attention (no qkv/proj) at x's grid, ms per view: building the extended
    query/key/value, SDPA on them (default backend, cuDNN), and FlexAttention with the
    relative-position bias as a score modification (head size 64; round 6: ~14x slower)."""
    from torch.nn.attention.flex_attention import flex_attention

    B, H, W, C = x.shape
    heads, hd = attn.heads, C // attn.heads
    qkv = attn.qkv(x).view(B, H * W, 3, heads, hd)
    out: dict = {}
    out["extend_itself"] = timed(lambda: attn.with_rel_pos(qkv, H, W)) / B
    q2, k2, v2 = attn.with_rel_pos(qkv, H, W)
    scale = attn._scale(hd)
    out["extended"] = timed(lambda: F.scaled_dot_product_attention(q2, k2, v2, scale=scale)) / B
    reference = F.scaled_dot_product_attention(q2, k2, v2, scale=scale)[..., :hd]
    try:
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            fn = lambda: F.scaled_dot_product_attention(q2, k2, v2, scale=scale)  # noqa: E731
            out["extended_cudnn"] = timed(fn) / B
    except Exception as exc:
        out["extended_cudnn"] = f"{type(exc).__name__}: {str(exc)[:120]}"
    if not FLEX:
        return out
    q, k, v = (t.transpose(1, 2).contiguous() for t in qkv.unbind(2))  # (B, heads, N, hd)
    try:
        Rh = relative_position_table(H, attn.rel_pos_h)
        Rw = relative_position_table(W, attn.rel_pos_w)
        grid_q = q.reshape(B, heads, H, W, hd)
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, Rh).reshape(B, heads, H * W, H).contiguous()
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, Rw).reshape(B, heads, H * W, W).contiguous()

        def score_mod(score, b, h, q_idx, kv_idx):
            return score + rel_h[b, h, q_idx, kv_idx // W] + rel_w[b, h, q_idx, kv_idx % W]

        flex = torch.compile(flex_attention, dynamic=False)
        got = flex(q, k, v, score_mod=score_mod, scale=hd**-0.5)
        out["flex"] = timed(lambda: flex(q, k, v, score_mod=score_mod, scale=hd**-0.5)) / B
        out["flex_err"] = (got.float() - reference.float()).abs().max().item()
    except Exception as exc:
        out["flex"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return out


def compiled(model, pixels_by_side: dict) -> dict:
    """The encoder with SAM and CLIP under torch.compile: compile seconds and ms per view."""
    sam, clip, projector = model.model.sam_model, model.model.vision_model, model.model.projector
    csam, cclip = torch.compile(sam), torch.compile(clip)
    out = {}
    for side, pixels in pixels_by_side.items():
        eager = encode_views(sam, clip, projector, pixels)
        t0 = time.perf_counter()
        got = encode_views(csam, cclip, projector, pixels)
        torch.cuda.synchronize()
        out[f"{side}_compile_s"] = round(time.perf_counter() - t0, 1)
        out[f"{side}_ms_per_view"] = timed(partial(encode_views, csam, cclip, projector, pixels)) / len(pixels)
        out[f"{side}_max_abs_err"] = (got.float() - eager.float()).abs().max().item()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, default=32)
    ap.add_argument("--compile", action="store_true", help="also time SAM and CLIP under "
                    "torch.compile (round 6: 33 s to compile at 1024 px, 126 s at 640)")
    ap.add_argument("--flex", action="store_true", help="also time FlexAttention")
    ap.add_argument("--out")
    args = ap.parse_args()
    global FLEX
    FLEX = args.flex
    model = random_model(DeepseekOCRConfig())
    torch.manual_seed(0)
    pixels = {side: torch.randn(args.views, 3, side, side, device="cuda", dtype=torch.bfloat16)
              for side in (1024, 640)}
    report: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    with torch.inference_mode():
        report["parts"] = [parts(model, p) for p in pixels.values()]
        for row in report["parts"]:
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
                  flush=True)
        sam = model.model.sam_model
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            encode_views(sam, model.model.vision_model, model.model.projector, pixels[1024])
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25)
        print(table, flush=True)
        report["kernels_1024"] = table
        glob = next(b for b in sam.blocks if not b.window_size)
        report["global_attention"] = {}
        for side, p in pixels.items():
            x = glob.norm1(sam.patch_embed(p))
            report["global_attention"][side] = attention_variants(glob.attn, x)
            print(side, json.dumps(report["global_attention"][side]), flush=True)
        if args.compile:
            try:
                report["compiled"] = compiled(model, pixels)
            except Exception as exc:
                report["compiled"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            print("compiled", json.dumps(report["compiled"]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
