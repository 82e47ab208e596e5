"""bf16 MoE numerics against a transcription of the released MoE as the release runs it.

The release (`modeling_deepseekv2.py`, `MoEGate` + `DeepseekV2MoE.moe_infer`) runs in bf16 under
`torch.autocast(..., dtype=torch.bfloat16)`. `released_moe` below transcribes that code path
(written from reading it): the gate "in float32" that autocast turns into a bf16 linear,
softmax in float32, unsorted top-k, experts on the expert-sorted tokens, then the float32
combine rounded once. It runs under CPU autocast here, and under CUDA autocast (as the release
runs) in the GPU test at the end, at full size.

Checked, on random weights and on near ties built on purpose (two experts whose float32
logits differ by less than half a bf16 step): every MoE backend picks the same experts as the
transcription and gives the same outputs; the float32-gate variant (`numerics="fp32"`) picks
differently on the ties; a tiny bf16 decoder decodes the same greedy tokens with our MoE as
with the transcription.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from core_model.config import ClipConfig, DecoderConfig, DeepseekOCRConfig, SamConfig
from core_model.model import DeepseekOCRForCausalLM
from core_model.moe import MoE

BACKENDS = ("loop", "gather", "dense", "grouped")
H, INTER, E, K = 64, 32, 8, 3  # hidden, expert width, experts, top-k


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mlp(x: torch.Tensor, state: dict, prefix: str) -> torch.Tensor:
    gate, up, down = (state[f"{prefix}{p}_proj.weight"] for p in ("gate", "up", "down"))
    return F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)


def released_moe(state: dict, x: torch.Tensor, top_k: int, scale: float = 1.0):
    """The released DeepseekV2MoE forward (eval, softmax, greedy), run as the release runs it.

    Args:
        state: the MoE's unpacked state dict (`gate.weight`, `experts.E.*`, `shared_experts.*`).
        x: (..., H) bf16 hidden states.

    Returns:
        The output (..., H) and the chosen expert ids (N, top_k), unsorted.
    """
    num_experts = state["gate.weight"].shape[0]
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        # MoEGate: written in float32; autocast runs the linear in bf16.
        logits = F.linear(flat.type(torch.float32), state["gate.weight"].type(torch.float32))
        scores = logits.softmax(dim=-1, dtype=torch.float32)
        weight, chosen = torch.topk(scores, k=top_k, dim=-1, sorted=False)
        weight = weight * scale
        # moe_infer: pairs sorted by expert, each expert on its block of tokens.
        hits = torch.zeros(flat.shape[0], num_experts, dtype=torch.long, device=x.device)
        per_expert = hits.scatter_(1, chosen, 1).sum(dim=0).tolist()
        order = chosen.view(-1).argsort()
        tokens = flat[order // top_k]
        blocks, start = [], 0
        for expert, count in enumerate(per_expert):
            if count:
                blocks.append(_mlp(tokens[start : start + count], state, f"experts.{expert}."))
                start += count
        stacked = torch.cat(blocks)
        unsorted = torch.empty_like(stacked)
        unsorted[order] = stacked
        combined = (
            unsorted.view(*chosen.shape, -1).type(weight.dtype).mul_(weight.unsqueeze(-1))
            .sum(dim=1).type(unsorted.dtype)
        )
        out = combined.view(shape) + _mlp(x, state, "shared_experts.")
    return out, chosen


def random_moe(seed: int) -> MoE:
    torch.manual_seed(seed)
    moe = MoE(H, INTER, num_experts=E, top_k=K, num_shared_experts=2)
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return moe.to(torch.bfloat16).eval()


def tie_gate_(gate: torch.Tensor, x: torch.Tensor, rank: int, favour_higher: bool) -> tuple[int, int]:
    """Make the experts ranked `rank` and `rank + 1` for token `x` tie in bf16 but not in fp32.

    The higher-index row of the pair becomes a copy of the other, then one of its small
    weights moves one bf16 step, so its float32 logit moves by far less than a bf16 step of
    the logit: float32 has a strict winner (the higher index when `favour_higher`), the bf16
    logits are equal and the top-k tie-break decides.

    Returns:
        (winner in float32, loser in float32).
    """
    ranked = F.linear(x.float(), gate.float()).argsort(descending=True).tolist()
    low, high = sorted(ranked[rank : rank + 2])
    gate[high] = gate[low]
    for j in x.float().abs().argsort().tolist():  # smallest inputs first: finest steps
        if x[j] == 0 or gate[high, j] == 0:
            continue
        candidate = gate.clone()
        rise = bool(x[j] > 0) == favour_higher  # raise gate[high, j] iff that raises the logit
        bits = candidate[high, j : j + 1].view(torch.int16)  # bf16 bits: +1 = one step away from 0
        bits += 1 if bool(candidate[high, j] > 0) == rise else -1
        exact = F.linear(x.float(), candidate.float())
        rounded = F.linear(x, candidate)
        if exact[high] != exact[low] and rounded[high] == rounded[low]:
            gate.copy_(candidate)
            return (high, low) if exact[high] > exact[low] else (low, high)
    raise AssertionError("could not build a bf16 tie")


def tied_inputs(moe: MoE, favour_higher: bool) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Tokens with engineered ties at the top-k boundary (one pair per token block)."""
    gen = torch.Generator().manual_seed(7 + favour_higher)
    x = torch.randn(12, H, generator=gen).to(torch.bfloat16)
    with torch.no_grad():
        pair = tie_gate_(moe.gate.weight.data, x[0], K - 1, favour_higher)
    return x, [pair]


def sorted_ids(ids: torch.Tensor) -> torch.Tensor:
    return ids.sort(dim=-1).values


def assert_same_output(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """Bit-identical here; elsewhere allow rare last-place differences from matmul kernels."""
    differ = ours != ref
    assert differ.float().mean().item() <= 0.02, f"{int(differ.sum())} elements differ"
    torch.testing.assert_close(ours.float(), ref.float(), rtol=2**-7, atol=1e-6)


def test_release_gate_runs_in_bf16_under_autocast():
    """The premise: the released gate's "float32" linear yields bf16 logits under autocast."""
    moe = random_moe(0)
    x = torch.randn(5, H).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = F.linear(x.type(torch.float32), moe.gate.weight.type(torch.float32))
    assert logits.dtype == torch.bfloat16
    assert torch.equal(logits, F.linear(x, moe.gate.weight))


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_match_the_released_moe_in_bf16(backend):
    moe = random_moe(1)
    state = {k: v.clone() for k, v in moe.state_dict().items()}
    x = torch.randn(3, 13, H, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    ref, ref_ids = released_moe(state, x, K)
    with torch.no_grad():
        _, ids = moe.route(x.reshape(-1, H))
        moe.pack()
        moe.backend = backend
        ours = moe(x)
    assert torch.equal(sorted_ids(ids), sorted_ids(ref_ids))
    assert_same_output(ours, ref)


@pytest.mark.parametrize("favour_higher", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_near_ties_pick_the_released_experts(backend, favour_higher):
    moe = random_moe(3)
    x, pairs = tied_inputs(moe, favour_higher)
    state = {k: v.clone() for k, v in moe.state_dict().items()}
    ref, ref_ids = released_moe(state, x, K)
    with torch.no_grad():
        _, ids = moe.route(x)
        moe.pack()
        moe.backend = backend
        ours = moe(x)
    assert torch.equal(sorted_ids(ids), sorted_ids(ref_ids))
    assert_same_output(ours, ref)
    (winner, loser), = pairs
    assert (winner in ids[0]) != (loser in ids[0])  # exactly one of the tied pair is used


def test_fp32_gate_chooses_differently_on_bf16_ties():
    """The tie matters: the float32 gate picks the float32 winner every time; the release
    follows the bf16 tie-break, so for one of the two orientations the choices differ."""
    flips = 0
    for favour_higher in (False, True):
        moe = random_moe(3)
        x, [(winner, _)] = tied_inputs(moe, favour_higher)
        state = {k: v.clone() for k, v in moe.state_dict().items()}
        _, ref_ids = released_moe(state, x, K)
        with torch.no_grad():
            moe.numerics = "fp32"
            _, fp32_ids = moe.route(x)
        assert winner in fp32_ids[0]
        flips += not torch.equal(sorted_ids(fp32_ids[:1]), sorted_ids(ref_ids[:1]))
    assert flips >= 1


def test_numerics_agree_in_float32_and_reject_unknown_names():
    moe = random_moe(4).float()
    x = torch.randn(6, H)
    with torch.no_grad():
        release = moe.route(x)
        moe.numerics = "fp32"
        fp32 = moe.route(x)
        moe.numerics = "bf16ish"
        with pytest.raises(ValueError, match="numerics"):
            moe.route(x)
    assert torch.equal(release[1], fp32[1]) and torch.equal(release[0], fp32[0])


def tiny_decoder_model(seed: int) -> DeepseekOCRForCausalLM:
    cfg = DecoderConfig(
        vocab_size=96, hidden_size=H, intermediate_size=96, moe_intermediate_size=INTER,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
        n_routed_experts=E, n_shared_experts=2, num_experts_per_tok=K,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    vision = {  # the vision tower is unused here: keep it tiny
        "sam": SamConfig(width=8, layers=1, heads=1, global_attn_indexes=(0,),
                         downsample_channels=(8, 8), mlp_dim=8, out_chans=8),
        "clip": ClipConfig(width=8, layers=1, heads=1, mlp_dim=8),
    }
    model = DeepseekOCRForCausalLM(DeepseekOCRConfig(decoder=cfg, projector_input_dim=16, **vision))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return model.to(torch.bfloat16).eval()


def greedy(model: DeepseekOCRForCausalLM, prompt: torch.Tensor, steps: int) -> list[int]:
    ids = prompt.clone()
    with torch.no_grad():
        for _ in range(steps):
            positions = torch.arange(ids.shape[1])[None]
            hidden = model(model.embed(ids), positions)
            ids = torch.cat([ids, model.compute_logits(hidden[:, -1]).argmax(-1, keepdim=True)], 1)
    return ids[0, prompt.shape[1] :].tolist()


def released_decoder(model: DeepseekOCRForCausalLM, chosen: list) -> DeepseekOCRForCausalLM:
    """A copy of `model` whose MoE layers run `released_moe`, recording the experts chosen."""
    reference = copy.deepcopy(model)
    for layer in reference.model.layers:
        if isinstance(layer.mlp, MoE):
            state = {k: v.clone() for k, v in layer.mlp.state_dict().items()}

            def forward(x, state=state):
                out, ids = released_moe(state, x, K)
                chosen.append(sorted_ids(ids))
                return out

            layer.mlp.forward = forward
    return reference


def record_routes(model: DeepseekOCRForCausalLM, chosen: list) -> None:
    for layer in model.model.layers:
        if isinstance(layer.mlp, MoE):
            route = layer.mlp.route

            def recorded(x, route=route):
                weights, ids = route(x)
                chosen.append(sorted_ids(ids))
                return weights, ids

            layer.mlp.route = recorded


@pytest.mark.parametrize("backend", BACKENDS)
def test_greedy_tokens_equal_a_decoder_with_the_released_moe(backend):
    """A bf16 decoder, a tie engineered at the first MoE layer for the prompt's last token:
    with our MoE it decodes the tokens, and picks the experts, of the transcribed release."""
    model = tiny_decoder_model(5)
    prompt = torch.randint(0, 96, (1, 9), generator=torch.Generator().manual_seed(6))
    first_moe = model.model.layers[1].mlp
    seen: dict[str, torch.Tensor] = {}
    hook = first_moe.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        model(model.embed(prompt), torch.arange(prompt.shape[1])[None])
    hook.remove()
    with torch.no_grad():
        tie_gate_(first_moe.gate.weight.data, seen["x"][0, -1], K - 1, favour_higher=False)

    theirs: list[torch.Tensor] = []
    want = greedy(released_decoder(model, theirs), prompt, steps=6)
    ours: list[torch.Tensor] = []
    model.pack()
    model.set_moe_backend(backend)
    record_routes(model, ours)
    got = greedy(model, prompt, steps=6)

    assert got == want
    assert len(ours) == len(theirs)
    for mine, release in zip(ours, theirs, strict=True):
        assert torch.equal(mine, release)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("tokens", [1, 5, 64, 300])
@pytest.mark.parametrize("backend", [*BACKENDS, "fused"])
@torch.no_grad()
def test_full_size_backends_match_the_released_moe_under_cuda_autocast(backend, tokens):
    """As the release runs: full-size MoE, bf16 weights, CUDA autocast; plus a built tie.
    `fused` (auto's choice for decode batches of 129-1,024 pages) included."""
    from core_model.moe import fused_moe_available, grouped_mm_available

    torch.manual_seed(tokens)
    moe = MoE(1280, 896, num_experts=64, top_k=6, num_shared_experts=2).cuda()
    for p in moe.parameters():
        p.normal_(0, 0.02)
    moe = moe.to(torch.bfloat16).eval()
    x = torch.randn(tokens, 1280, device="cuda").to(torch.bfloat16)
    tie_gate_(moe.gate.weight.data, x[0], 5, favour_higher=False)
    state = {k: v.clone() for k, v in moe.state_dict().items()}
    ref, ref_ids = released_moe(state, x, 6)
    _, ids = moe.route(x)
    moe.pack()
    if backend == "grouped" and not grouped_mm_available(x):
        pytest.skip("torch._grouped_mm needs Hopper and bf16")
    if backend == "fused" and not fused_moe_available(x):
        pytest.skip("the fused MoE needs Triton")
    moe.backend = backend
    out = moe(x)
    assert torch.equal(sorted_ids(ids), sorted_ids(ref_ids))
    err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
    assert err < 4e-3, err  # expert matmuls by other kernels: bf16 rounding only
