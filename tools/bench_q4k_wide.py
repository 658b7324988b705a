"""Q4_K on 64-weight chunks (cuda_kernels modes 16-19) against the default (12) outside the GPU runner, on the GPU
machine: the GEMV on the runner's matrix shapes with x already rounded (as the runner calls it), and an ncu target.

  python tools/bench_q4k_wide.py                 # per shape: us per call for modes 12, 16, 17, 14 (nr 4) and the
                                                 # default (tools/bench_gpu_defaults.py gemv on these shapes)
  ncu --kernel-name regex:gemv_q8 --launch-skip 7 --launch-count 1 --section InstructionStats \\
      --section Occupancy --section WarpStateStats python tools/bench_q4k_wide.py --ncu-target
                                                 # one isolated call each of Q4_0 mode 14 (launches 0-3),
                                                 # Q4_K mode 12 (4-7) and Q4_K mode 16 (8-11), 11008x4096

Method as tools/bench_cuda.py: CUDA graphs rotating over 4x L2 of random GGUF weights, median of 5 replays.
BENCHMARKS.md (cuda-kernels reading) and cuda_kernels/NOTES.md (v8) quote both, H100, 2026-11-27.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

RUNNER_SHAPES = [(2560, 2048), (2048, 2048), (11264, 2048), (2048, 5632), (12288, 4096), (22016, 4096),
                 (4096, 11008), (4096, 4096)]  # TinyLlama's fused q/k/v, o, gate/up, down; Llama-2-7B's


def runner_shapes() -> None:
    from bench_gpu_defaults import gemv

    gemv(["Q4_K"], RUNNER_SHAPES, [12, 16, 17, 14])


def ncu_target() -> None:
    import torch
    from bench_cuda import random_gguf
    from gguf import GGMLQuantizationType as T

    from awq_gguf import cuda_kernels as ck

    gen = torch.Generator(device="cuda").manual_seed(0)
    rows, cols = 11008, 4096
    x = torch.randn(1, cols, device="cuda", generator=gen).half()
    for name, modes in (("Q4_0", (14,)), ("Q4_K", (12, 16))):
        w = ck.QuantMatrix.from_gguf(random_gguf(T[name], rows, cols, gen), T[name], rows, cols)
        for m in modes:
            for _ in range(4):  # 3 warm-up calls, then the one to profile
                ck.gemv(x, w, nr=4, mode=m)
            torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ncu-target", action="store_true", help="the calls to profile with ncu (see above)")
    args = ap.parse_args()
    ncu_target() if args.ncu_target else runner_shapes()


if __name__ == "__main__":
    main()
