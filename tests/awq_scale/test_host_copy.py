"""awq_scale.host_copy.to_host: the same values as .cpu(), contiguous, on the CPU; the staging buffer is reused."""

from __future__ import annotations

import pytest
import torch

from awq_gguf.awq_scale import host_copy


def test_cpu_tensors_pass_through_contiguous() -> None:
    t = torch.randn(64, 32)
    out = host_copy.to_host(t.T)
    assert out.is_contiguous() and torch.equal(out, t.T)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_gpu_tensors_equal_plain_copy(dtype: torch.dtype) -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    big = torch.randn(3000, 1000, device="cuda", generator=g).to(dtype)  # above the pinned threshold
    small = torch.randn(100, 10, device="cuda", generator=g).to(dtype)
    outs = [host_copy.to_host(t) for t in (big, big.T, small, big[:1500])]
    for out, t in zip(outs, (big, big.T, small, big[:1500])):
        assert out.device.type == "cpu" and out.is_contiguous() and out.dtype == dtype
        assert torch.equal(out, t.cpu())
        assert not out.is_pinned()
    # results do not alias the staging buffer: a later copy leaves an earlier result as it was
    first = host_copy.to_host(big)
    host_copy.to_host(torch.zeros_like(big))
    assert torch.equal(first, big.cpu())
