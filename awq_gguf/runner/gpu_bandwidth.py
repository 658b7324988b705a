"""The card's device-to-device copy bandwidth, the peer of GPU decoding speed: a decode step must stream every
weight byte once, so (copy bandwidth) / (weight bytes per token) bounds its tokens per second."""

from __future__ import annotations

import statistics

import torch


def copy_bandwidth(device: torch.device | str = "cuda", nbytes: int = 1 << 30, reps: int = 20) -> float:
    """Bytes per second of a `nbytes` device-to-device copy, counting bytes read plus bytes written; the median
    of `reps` copies timed with CUDA events after one warm-up (random bytes: never time zeros)."""
    dev = torch.device(device)
    src = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)  # seconds
    if not torch.equal(dst[:4096], src[:4096]):
        raise RuntimeError("device copy check failed")
    return 2 * nbytes / statistics.median(times)
