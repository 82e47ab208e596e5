"""Small DeepEncoder calls replayed as CUDA graphs give the eager call's vision tokens: the
same bits for calls of a bucket's size, the same values for calls padded up to one, the eager
path for calls too large; two view sizes; and through the engine the same tokens with and
without graphs. The graph tests need a CUDA device."""

from __future__ import annotations

import pytest
import torch

from core_model.encoder_graphs import EncoderGraphs

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def test_off_cuda_and_with_autograd_the_eager_call_runs():
    calls = []

    def encode(pixels):
        calls.append(len(pixels))
        return pixels * 2

    graphs = EncoderGraphs(encode)
    x = torch.randn(3, 3, 8, 8)
    with torch.inference_mode():
        assert torch.equal(graphs(x), x * 2)
    assert calls == [3] and graphs.replays == 0


@pytest.fixture(scope="module")
def tiny_model():
    from core_model.config import DeepseekOCRConfig
    from core_model.model import DeepseekOCRForCausalLM
    from tests.conftest import TINY_CONFIG

    torch.manual_seed(0)
    model = DeepseekOCRForCausalLM(DeepseekOCRConfig.from_dict(TINY_CONFIG))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.05)
    return model.to("cuda", torch.bfloat16).eval()


def _images(model, count, mode, seed):
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    images = []
    for i in range(count):
        pixels = torch.randint(0, 256, (500 + 37 * i, 380, 3), generator=generator, dtype=torch.uint8)
        images.append(model.prepare_image(Image.fromarray(pixels.numpy()), mode, normalize=False))
    return images


@needs_cuda
@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 9])
@pytest.mark.parametrize("mode", ["base", "gundam"])
def test_graphs_give_the_eager_tokens(tiny_model, count, mode):
    inner = tiny_model.model
    images = _images(tiny_model, count, mode, seed=count)
    with torch.inference_mode():
        inner.encoder_graphs = None
        eager = tiny_model.encode_images(images, max_views_per_call=32)
        graphs = inner.use_encoder_graphs((1024, 640))
        before = graphs.replays
        replayed = tiny_model.encode_images(images, max_views_per_call=32)
        again = tiny_model.encode_images(images[:1], max_views_per_call=32)  # another bucket
    inner.encoder_graphs = None
    views = {1024: count} if mode == "base" else None
    if views is not None:  # Base: one call of `count` views, a graph up to 8
        assert graphs.replays - before == (2 if count <= 8 else 1)
    else:  # Gundam: the global views and the tiles in calls of their own
        assert graphs.replays > before
    assert len(replayed) == len(eager)
    for a, b in zip(replayed, eager, strict=True):
        if count in graphs.buckets or count > graphs.buckets[-1]:  # the eager call's shapes
            assert torch.equal(a, b)
        else:  # padded up to its bucket: another batch size, the same values but rounding
            torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)
    if count == 1:
        assert torch.equal(again[0], eager[0])


@needs_cuda
def test_the_engine_reads_the_same_tokens_with_encoder_graphs(tiny_checkpoint):
    from PIL import Image

    from core_model.engines.interface import PageRequest
    from core_model.engines.native import NativeEngine

    generator = torch.Generator().manual_seed(3)
    pages = [Image.fromarray(torch.randint(0, 256, (420 + 30 * i, 300, 3), generator=generator,
                                           dtype=torch.uint8).numpy()) for i in range(3)]
    tokens = {}
    for on in (True, False):
        engine = NativeEngine.from_pretrained(tiny_checkpoint, device="cuda", max_new_tokens=8,
                                              encoder_graphs=on)
        try:
            # One page a call: one view a DeepEncoder call, the eager call's shapes exactly.
            results = [engine.generate([PageRequest(image=p, mode="base")])[0] for p in pages]
            graphs = engine.model.model.encoder_graphs
            assert (graphs is not None and graphs.replays > 0) == on
            tokens[on] = [r.token_ids for r in results]
        finally:
            engine.close()
    assert tokens[True] == tokens[False]
