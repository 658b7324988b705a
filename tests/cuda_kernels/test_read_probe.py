"""The bandwidth ceiling probe (read_probe.cu) of tools/bench_cuda.py: it must read every byte it is given (its
xor over 64 slots equals the buffer's xor of 32-bit words) and refuse buffers it cannot read in 16-byte loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu


def test_read_probe_reads_every_byte(ck, seed):
    from awq_gguf.cuda_kernels import ops

    gen = torch.Generator(device="cuda").manual_seed(seed)
    # sizes below one block of threads, one partial round of the 4-deep loop, and many rounds of the whole grid
    for nbytes in (16, 16 * 257, 16 * 4096 * 3 + 48, 9_437_184 + 16 * 7):
        buf = torch.randint(-2**31, 2**31 - 1, (nbytes // 4,), dtype=torch.int32, device="cuda", generator=gen)
        out = torch.zeros(64, dtype=torch.int32, device="cuda")
        ops.read_probe(buf, out)
        want = int(np.bitwise_xor.reduce(buf.cpu().numpy().view(np.uint32)))
        got = int(np.bitwise_xor.reduce(out.cpu().numpy().view(np.uint32)))
        assert got == want, f"{nbytes} bytes: xor {got:#x}, expected {want:#x}"


def test_read_probe_refuses_bad_buffers(ck):
    from awq_gguf.cuda_kernels import ops

    out = torch.zeros(64, dtype=torch.int32, device="cuda")
    buf = torch.zeros(64, dtype=torch.uint8, device="cuda")
    with pytest.raises(ValueError, match="multiple of 16"):
        ops.read_probe(buf[:40], out)
    with pytest.raises(ValueError, match="16-byte aligned"):
        ops.read_probe(buf[4:36], out)
    with pytest.raises(ValueError, match="CUDA tensor"):
        ops.read_probe(buf.cpu(), out)
    with pytest.raises(ValueError, match="int32"):
        ops.read_probe(buf, out.float())
