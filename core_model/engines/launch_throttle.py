"""Keep the engine thread from blocking inside CUDA launches while it holds the GIL.

A DeepEncoder call or a prefill chunk launches hundreds of kernels per layer stack, far
faster than the GPU runs them. Once the device's launch queue is full, each launch blocks
inside the driver, and PyTorch holds the GIL there: every other thread of the process (the
Converter's page feed, its finishing threads, the threads preparing pixels) stops until the
GPU catches up. Measured on an H200, Gundam: the engine thread spent 10.5 s launching the
encoder's 10.6 s of GPU work.

`LaunchThrottle` keeps at most `depth` layers' work queued: after each layer of the model's
layer stacks (SAM blocks, CLIP and decoder layers, any `nn.ModuleList` of layers) it records
an event and waits, with the GIL released, for the one `depth` layers back. The GPU always
has the next layer queued, and the host waits where others can run. It only acts while
`active()` (the engine turns it on around encoder calls and prefills; decode steps are CUDA
graphs, one launch each) and never during a CUDA graph capture.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator

import torch
from torch import nn


class LaunchThrottle:
    def __init__(self, depth: int = 2) -> None:
        self.depth = depth
        self._events: deque[torch.cuda.Event] = deque()
        self._active = False
        self.waits = 0  # times the host waited for the device (tests, stats)

    @classmethod
    def install(cls, model: nn.Module, depth: int = 2) -> LaunchThrottle:
        """A throttle ticking after every layer of `model`'s layer lists."""
        throttle = cls(depth)
        for module in model.modules():
            if isinstance(module, nn.ModuleList):
                for layer in module:
                    layer.register_forward_hook(throttle._after_layer)
        return throttle

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._active = True
        try:
            yield
        finally:
            self._active = False
            self._events.clear()

    def _after_layer(self, module: nn.Module, args: tuple, output: object) -> None:
        if not self._active:
            return
        out = output[0] if isinstance(output, tuple) else output
        if not (isinstance(out, torch.Tensor) and out.is_cuda) or torch.cuda.is_current_stream_capturing():
            return
        event = torch.cuda.Event()
        event.record()
        self._events.append(event)
        while len(self._events) > self.depth:
            oldest = self._events.popleft()
            if not oldest.query():
                self.waits += 1
                oldest.synchronize()  # the GIL is released while it waits
