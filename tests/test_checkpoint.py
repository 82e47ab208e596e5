"""Checkpoint resolution, config, tokenizer and weight loading, with a small stand-in model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from core_model import checkpoint as ckpt
from core_model.checkpoint import (
    CheckpointError,
    load_pretrained,
    load_weights,
    parameters_on_meta,
    read_config,
    resolve_checkpoint,
    save_checkpoint,
)
from core_model.config import DeepseekOCRConfig

REFERENCE = Path(__file__).parent / "data" / "reference"  # the released files, copied
RELEASED_CONFIG = (
    json.loads((REFERENCE / "config.json").read_text())
    if REFERENCE.is_dir()
    else {
        "vocab_size": 64,
        "hidden_size": 8,
    }
)


class StandIn(nn.Module):
    """A few of the released names with small shapes, plus a computed buffer."""

    def __init__(self, config: DeepseekOCRConfig | None = None, vocab: int = 64, width: int = 8):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, width)
        self.model.sam_model = nn.Module()
        self.model.sam_model.pos_embed = nn.Parameter(torch.randn(1, 4, 4, width))
        self.model.sam_model.net_2 = nn.Conv2d(width, 2 * width, 3, bias=False)
        self.model.vision_model = nn.Module()
        self.model.vision_model.embeddings = nn.Module()
        self.model.vision_model.embeddings.register_buffer("position_ids", torch.arange(5)[None])
        self.model.projector = nn.Module()
        self.model.projector.layers = nn.Linear(2 * width, width)
        self.model.image_newline = nn.Parameter(torch.randn(width))
        self.model.view_seperator = nn.Parameter(torch.randn(width))
        self.model.layers = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(2))
        self.model.norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, width, 2).float() / width))
        self.register_buffer("inv_freq", inv_freq, persistent=False)


@pytest.fixture
def reference_model() -> StandIn:
    torch.manual_seed(0)
    return StandIn()


@pytest.fixture(scope="session")
def small_tokenizer_path(tmp_path_factory) -> Path:
    """A word-level tokenizer with the four special tokens the loader requires (fast to read)."""
    from tokenizers import Tokenizer as HfTokenizer
    from tokenizers.models import WordLevel

    vocab = {"<｜begin▁of▁sentence｜>": 0, "<｜end▁of▁sentence｜>": 1, "<｜▁pad▁｜>": 2, "<unk>": 3}
    vocab["<image>"] = 128815
    path = tmp_path_factory.mktemp("small-tokenizer") / "tokenizer.json"
    HfTokenizer(WordLevel(vocab, unk_token="<unk>")).save(str(path))
    return path


@pytest.fixture
def checkpoint_dir(tmp_path, reference_model, small_tokenizer_path) -> Path:
    return save_checkpoint(
        reference_model.state_dict(),
        tmp_path / "ckpt",
        config=RELEASED_CONFIG,
        tokenizer_file=small_tokenizer_path,
    )


def assert_same_weights(model: nn.Module, reference: nn.Module, dtype=torch.float32):
    loaded, expected = model.state_dict(), reference.state_dict()
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        target = dtype if tensor.is_floating_point() else tensor.dtype
        assert loaded[name].dtype == target, name
        assert torch.equal(loaded[name], tensor.to(target)), name


# ---------------------------------------------------------------- loading
def test_single_file_round_trip(tmp_path, reference_model, real_tokenizer_path):
    checkpoint_dir = save_checkpoint(
        reference_model.state_dict(),
        tmp_path / "ckpt",
        config=RELEASED_CONFIG,
        tokenizer_file=real_tokenizer_path,
    )
    model, config, tokenizer = load_pretrained(checkpoint_dir, device="cpu", model_factory=StandIn)
    assert (checkpoint_dir / "model.safetensors").is_file()
    assert_same_weights(model, reference_model)
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert torch.equal(model.inv_freq, reference_model.inv_freq)  # computed buffer kept
    assert isinstance(config, DeepseekOCRConfig)
    assert tokenizer.image_id == config.image_token_id == 128815


def test_sharded_round_trip(tmp_path, reference_model, small_tokenizer_path):
    directory = save_checkpoint(
        reference_model.state_dict(),
        tmp_path / "sharded",
        config=RELEASED_CONFIG,
        max_shard_bytes=1024,
        tokenizer_file=small_tokenizer_path,
    )
    shards = sorted(directory.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and (directory / "model.safetensors.index.json").is_file()
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(reference_model.state_dict())
    model, _, _ = load_pretrained(directory, device="cpu", model_factory=StandIn)
    assert_same_weights(model, reference_model)


@pytest.mark.parametrize(
    "saved,wanted", [(torch.bfloat16, torch.float32), (torch.float32, torch.bfloat16)]
)
def test_dtype_is_honoured_and_integers_kept(
    tmp_path, reference_model, small_tokenizer_path, saved, wanted
):
    state = {
        k: (v.to(saved) if v.is_floating_point() else v)
        for k, v in reference_model.state_dict().items()
    }
    directory = save_checkpoint(
        state, tmp_path / "c", config=RELEASED_CONFIG, tokenizer_file=small_tokenizer_path
    )
    model, _, _ = load_pretrained(directory, device="cpu", dtype=wanted, model_factory=StandIn)
    for name, tensor in model.state_dict().items():
        if name.endswith("position_ids"):
            assert tensor.dtype == torch.int64
        else:
            assert tensor.dtype == wanted, name
            assert torch.equal(tensor, state[name].to(wanted)), name


def test_defaults_on_cpu_are_cpu_and_float32(checkpoint_dir):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU defaults")
    model, _, _ = load_pretrained(checkpoint_dir, model_factory=StandIn)
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert ckpt.default_dtype("cuda") == torch.bfloat16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_weights_go_straight_to_the_gpu_in_bfloat16(checkpoint_dir, reference_model):
    model, _, _ = load_pretrained(checkpoint_dir, model_factory=StandIn)
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert {b.device.type for b in model.buffers()} == {"cuda"}
    assert_same_weights(model.cpu(), reference_model, torch.bfloat16)


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_parameters_on_meta_costs_neither_memory_nor_initialisation():
    before = _rss_kib()
    with parameters_on_meta():
        big = nn.Linear(20_000, 20_000)  # 1.6 GB of float32 if it were filled
    assert _rss_kib() - before < 100 * 1024
    assert big.weight.is_meta and big.bias.is_meta
    assert nn.Linear(2, 2).weight.device.type == "cpu"  # the patch is gone afterwards


def test_loading_holds_one_copy_of_the_weights(tmp_path):
    """Peak host memory while loading a sharded bf16 checkpoint as float32, in a fresh process."""
    script = textwrap.dedent(
        """
        import sys, torch
        from torch import nn
        from core_model.checkpoint import load_weights, parameters_on_meta, save_checkpoint

        def peak_kib():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM"):
                    return int(line.split()[1])

        def build():
            return nn.ModuleList(nn.Linear(1024, 2048, bias=False) for _ in range(8))

        directory = sys.argv[1]
        save_checkpoint({k: v.bfloat16() for k, v in build().state_dict().items()}, directory,
                        config={}, max_shard_bytes=8 * 2**20)
        with parameters_on_meta():
            model = build()
        before = peak_kib()
        load_weights(model, directory, device="cpu", dtype=torch.float32)
        print(peak_kib() - before)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "big")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    model_kib = 8 * 1024 * 2048 * 4 // 1024  # 64 MiB of float32
    grown = int(result.stdout.split()[-1])
    assert grown < 1.35 * model_kib, f"peak grew {grown} KiB for a {model_kib} KiB model"


# ---------------------------------------------------------------- errors
def _write(tmp_path, state, tokenizer=None, **kwargs):
    return save_checkpoint(
        state, tmp_path / "bad", config=RELEASED_CONFIG, tokenizer_file=tokenizer, **kwargs
    )


def test_missing_names_are_named(tmp_path, reference_model, small_tokenizer_path):
    state = reference_model.state_dict()
    del state["lm_head.weight"], state["model.norm.bias"]
    directory = _write(tmp_path, state, small_tokenizer_path)
    with pytest.raises(
        CheckpointError, match=r"2 missing from the checkpoint: lm_head.weight, model.norm.bias"
    ):
        load_pretrained(directory, device="cpu", model_factory=StandIn)


def test_unexpected_names_are_named_with_count(tmp_path, reference_model, small_tokenizer_path):
    state = reference_model.state_dict()
    for i in range(7):
        state[f"model.extra.{i}.weight"] = torch.zeros(2)
    directory = _write(tmp_path, state, small_tokenizer_path)
    with pytest.raises(
        CheckpointError, match=r"7 unexpected in the checkpoint: model.extra.0.weight, .*, \.\.\."
    ):
        load_pretrained(directory, device="cpu", model_factory=StandIn)


def test_wrong_shape_is_named_with_both_shapes(tmp_path, reference_model, small_tokenizer_path):
    state = reference_model.state_dict()
    state["model.image_newline"] = torch.zeros(9)
    directory = _write(tmp_path, state, small_tokenizer_path)
    with pytest.raises(
        CheckpointError, match=r"model.image_newline \[9\] in checkpoint vs \[8\] in model"
    ):
        load_pretrained(directory, device="cpu", model_factory=StandIn, strict=False)


def test_not_strict_reports_and_allocates(tmp_path, reference_model):
    state = reference_model.state_dict()
    del state["lm_head.weight"]
    state["model.extra.weight"] = torch.zeros(3)
    directory = _write(tmp_path, state)
    with parameters_on_meta():
        model = StandIn()
    report = load_weights(model, directory, strict=False)
    assert report.missing == ["lm_head.weight"] and report.unexpected == ["model.extra.weight"]
    assert not model.lm_head.weight.is_meta and model.lm_head.weight.shape == (64, 8)
    assert report.loaded == len(reference_model.state_dict()) - 1


def test_not_strict_keeps_values_of_a_built_model_and_casts_them(tmp_path, reference_model, caplog):
    state = reference_model.state_dict()
    del state["lm_head.weight"]
    directory = _write(tmp_path, state)
    torch.manual_seed(1)
    model = StandIn()  # built normally: lm_head has its own initial values
    initial = model.lm_head.weight.detach().clone()
    with caplog.at_level("WARNING"):
        report = load_weights(model, directory, dtype=torch.bfloat16, strict=False)
    assert report.missing == ["lm_head.weight"]
    assert "1 missing: lm_head.weight" in caplog.text
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert torch.equal(model.lm_head.weight, initial.bfloat16())


def test_derived_position_ids_are_ignored_when_the_model_computes_them(tmp_path, reference_model):
    class WithoutPositionIds(StandIn):
        def __init__(self, config=None):
            super().__init__(config)
            del self.model.vision_model.embeddings.position_ids

    directory = _write(tmp_path, reference_model.state_dict())
    with parameters_on_meta():
        model = WithoutPositionIds()
    report = load_weights(model, directory)
    assert (
        report.ignored == ["model.vision_model.embeddings.position_ids"] and not report.unexpected
    )


def test_missing_tokenizer_is_an_error_before_weights_are_read(tmp_path, reference_model):
    directory = _write(tmp_path, reference_model.state_dict())
    (directory / "model.safetensors").write_bytes(b"not read")  # proves the order of checks
    with pytest.raises(CheckpointError, match=r"tokenizer.json"):
        load_pretrained(directory, device="cpu", model_factory=StandIn)


def test_missing_or_broken_config(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"has no config.json"):
        read_config(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match=r"config.json is not a valid model config"):
        read_config(tmp_path / "empty")


def test_released_config_is_read(tmp_path):
    shutil.copy(REFERENCE / "config.json", tmp_path / "config.json")
    config = read_config(tmp_path)
    assert (
        config.decoder.vocab_size == 129280 and config.sam.layers == 12 and config.clip.layers == 24
    )


def test_missing_weights_and_absent_shards(tmp_path, reference_model, small_tokenizer_path):
    directory = _write(
        tmp_path, reference_model.state_dict(), small_tokenizer_path, max_shard_bytes=1024
    )
    next(directory.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(CheckpointError, match=r"names shards that are absent: model-00002-of-"):
        load_pretrained(directory, device="cpu", model_factory=StandIn)
    for file in directory.glob("model*"):
        file.unlink()
    with pytest.raises(
        CheckpointError, match=r"needs model.safetensors or model.safetensors.index.json"
    ):
        load_pretrained(directory, device="cpu", model_factory=StandIn)


# ---------------------------------------------------------------- resolving
def test_resolve_directory_file_and_nonsense(tmp_path):
    assert resolve_checkpoint(tmp_path) == tmp_path
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is a file; give the checkpoint directory"):
        resolve_checkpoint(tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"no checkpoint directory at .*not a repo id"):
        resolve_checkpoint(tmp_path / "a" / "b" / "c")


def test_resolve_repo_id_uses_hub_then_cache(monkeypatch, tmp_path):
    hub = pytest.importorskip("huggingface_hub")
    calls = []

    def offline(repo_id, allow_patterns=None, local_files_only=False):
        calls.append(local_files_only)
        if local_files_only:
            return str(tmp_path)
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(hub, "snapshot_download", offline)
    assert resolve_checkpoint("deepseek-ai/DeepSeek-OCR") == tmp_path
    assert calls == [False, True]

    def nowhere(repo_id, allow_patterns=None, local_files_only=False):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(hub, "snapshot_download", nowhere)
    with pytest.raises(
        CheckpointError,
        match=r"could not be downloaded .*hub unreachable.* nor found in the local cache",
    ):
        resolve_checkpoint("deepseek-ai/DeepSeek-OCR")


# ---------------------------------------------------------------- the real architecture
def test_every_released_name_is_in_the_model():
    try:
        from core_model.model import DeepseekOCRForCausalLM
    except ImportError:
        pytest.skip(
            "core_model.model.DeepseekOCRForCausalLM is not in this branch yet (decoder part)"
        )
    released = (REFERENCE / "weight_names.txt").read_text().split()
    config = DeepseekOCRConfig.from_dict(RELEASED_CONFIG)
    with torch.device("meta"):
        model = DeepseekOCRForCausalLM(config)
    names = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    absent = sorted(set(released) - names)
    assert not absent, f"{len(absent)} released names not in the model, e.g. {absent[:5]}"
    extra = sorted({n for n, _ in model.named_parameters()} - set(released))
    assert not extra, f"{len(extra)} model parameters not in the release, e.g. {extra[:5]}"
