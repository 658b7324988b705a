"""Device-to-host copies of a block's large results through one reused pinned buffer.

A plain .cpu() of a CUDA tensor into fresh pageable memory ran at 1.6 GB/s on the H200 machine (the driver copies
through its own staging, single-threaded, faulting in every destination page): 0.49 s of a 3 s AWQ block for its
~800 MB of changed weights. A DMA copy into pinned memory runs at bus speed, and torch's CPU copy from there into
the result is spread over the torch threads. The buffer grows to the largest tensor copied and stays for the
process (one FFN matrix: 180 MB for a 7B model).
"""

from __future__ import annotations

import torch

_PINNED_MIN_BYTES = 1 << 22  # smaller tensors: a plain .cpu()
_staging: torch.Tensor | None = None


def to_host(t: torch.Tensor) -> torch.Tensor:
    """t on the CPU, contiguous (t itself, made contiguous, when it is already there)."""
    nbytes = t.numel() * t.element_size()
    if t.device.type != "cuda" or nbytes < _PINNED_MIN_BYTES:
        return t.cpu().contiguous()
    global _staging
    if _staging is None or _staging.numel() < nbytes:
        _staging = None  # the old buffer goes back to torch's pinned-memory cache first
        _staging = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    buf = _staging[:nbytes].view(t.dtype).view(t.shape)
    buf.copy_(t)  # synchronous: the buffer holds t when this returns
    return buf.clone()
