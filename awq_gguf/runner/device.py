"""Where the runner runs (`--device cpu|cuda`): the one place a command turns a device name into a model.

cpu   runner.model.Model on the C kernels or torch (`--backend`).
cuda  runner.gpu_model.GpuModel on the project's CUDA kernels. When they cannot run here (no GPU, a CPU-only
      torch, no nvcc or cffi, a failed build), CudaUnavailableError says why: the CLI prints it as one line and
      exits with code 2.
"""

from __future__ import annotations

from pathlib import Path

from awq_gguf.runner.errors import RunnerError

DEVICES = ("cpu", "cuda")


class CudaUnavailableError(RunnerError):
    """`--device cuda` asked for where the CUDA kernels cannot run."""


def check_device(device: str, backend: str | None = None) -> None:
    """Refuse an unknown device, a CPU backend named with cuda, and cuda where it cannot run (saying why)."""
    if device not in DEVICES:
        raise RunnerError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device != "cuda":
        return
    if backend is not None:
        raise RunnerError(f"--backend {backend} chooses a CPU backend; with --device cuda the CUDA kernels run")
    from awq_gguf import cuda_kernels

    reason = cuda_kernels.unavailable_reason()  # "" when they can run (builds them on first use)
    if reason:
        raise CudaUnavailableError(f"--device cuda is not available here: {reason}; use --device cpu")


def load_runner(path: Path, device: str = "cpu", n_ctx: int | None = None, backend: str | None = None,
                threads: int | None = None):
    """A ready model of `path` on `device` (Model or GpuModel, same interface)."""
    check_device(device, backend)
    if device == "cuda":
        from awq_gguf.runner.gpu_model import GpuModel

        return GpuModel.load(path, n_ctx=n_ctx)
    from awq_gguf.runner.model import Model

    return Model.load(path, n_ctx=n_ctx, backend=backend, threads=threads)
