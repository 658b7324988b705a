"""torch.compile for the quantizers' search loops, with a silent-enough fallback to eager.

The block searches are long chains of elementwise ops over [n, 32] tensors; eager torch makes one pass over
memory per op, while the compiled (inductor) version fuses each chain into one loop: 10-20x faster on CPU.
Compiling needs a C++ compiler on CPU (and Triton on CUDA); where that fails, the first call logs one warning
and every later call runs eager. The numbers can differ from eager in the last bits (fused arithmetic), which
changes no guarantee: every result is a valid block of its format, checked by its own stored error.

AWQ_GGUF_COMPILE=0 turns compilation off.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, TypeVar

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable)

_disabled_reason: str | None = None


def enabled() -> bool:
    return os.environ.get("AWQ_GGUF_COMPILE", "1") != "0" and _disabled_reason is None


def maybe_compile(fn: F) -> F:
    """fn, compiled on first use (dynamic shapes); eager when compilation is off or fails."""
    compiled: list[Callable | None] = [None]

    def call(*args, **kwargs):
        global _disabled_reason
        if not enabled():
            return fn(*args, **kwargs)
        if compiled[0] is None:
            import torch

            import torch._dynamo

            # every format's search closure shares one code object, and dynamo counts recompiles per code
            # object: 5 formats x (importance or not) x a few shape specializations
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            torch.fx.experimental._config.use_duck_shape = False  # equal sizes must not become a guard
            import torch._inductor.config

            # the searches round d and m to fp16 on purpose (what the file stores): keep those casts
            torch._inductor.config.emulate_precision_casts = True
            compiled[0] = torch.compile(fn, dynamic=True)
        try:
            return compiled[0](*args, **kwargs)
        except Exception as e:
            out = fn(*args, **kwargs)  # a genuine error in fn raises here, and compilation stays on
            # eager worked: no compiler, unsupported platform, ...: eager from now on
            _disabled_reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            logger.warning("torch.compile is unavailable (%s); quantizers run eager (slower)", _disabled_reason)
            return out

    call.__wrapped__ = fn  # type: ignore[attr-defined]
    call.__doc__ = fn.__doc__
    return call  # type: ignore[return-value]
