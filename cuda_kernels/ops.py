"""Torch-facing API of the CUDA kernels: GGUF weight matrices on the GPU, GEMV for decode, dequant + matmul.

  w = QuantMatrix.from_gguf(raw_bytes, GGMLQuantizationType.Q4_K, rows, cols, device="cuda")
  y = gemv(x, w)    # x fp16/bf16 [batch <= 16, cols] -> float32 [batch, rows]  (the project's kernels)
  y = matmul(x, w)  # x [..., cols] -> [..., rows] in x's dtype: gemv for <= 16 rows of x, else the prompt path

Weights are the GGUF file's bytes; `from_gguf` makes the one-time re-layout each format's kernel reads (each
format's .cuh says which): Q4_0 / Q8_0 get their quants and scales split into planes so that every load is aligned;
Q6_K's quants are regrouped per 32 consecutive weights (low nibbles, top bits) beside its scales and d; Q4_K keeps
its 144-byte super-blocks with the nibbles reordered per 32-weight sub-block and the 6-bit scales and mins repacked
so that one sub-block's pair is cheap to extract. Same bytes in total.

The prompt path (matrix-matrix) is, for now, the honest simple one: the kernels dequantize the whole matrix to
x's dtype (fp16 or bf16) and torch.matmul (cuBLAS) multiplies. Everything runs on the current CUDA stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ._lib import load

SUPPORTED = (GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_K,
             GGMLQuantizationType.Q6_K)
MAX_GEMV_BATCH = 16
_ACT = {torch.float16: 0, torch.bfloat16: 1}
_ACT_Q8_ONLY = {torch.float32: 2}  # x the int8-activation modes round from float32 (no float16 copy first)
_OUT = {torch.float16: 0, torch.bfloat16: 1, torch.float32: 2}


@dataclass(frozen=True)
class QuantMatrix:
    """A [rows, cols] GGUF-block weight matrix on one CUDA device, in the kernels' layout."""

    qtype: GGMLQuantizationType
    rows: int
    cols: int
    planes: tuple[torch.Tensor, ...]  # uint8, contiguous, on the device (see the format's .cuh)

    @property
    def device(self) -> torch.device:
        return self.planes[0].device

    @property
    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.planes)

    @classmethod
    def from_gguf(cls, raw, qtype: GGMLQuantizationType, rows: int, cols: int,
                  device: torch.device | str | None = None) -> QuantMatrix:
        """raw: the tensor's GGUF bytes (uint8 torch tensor or numpy array, [rows, row_bytes] or flat)."""
        qtype = GGMLQuantizationType(qtype)
        if qtype not in SUPPORTED:
            raise ValueError(f"no CUDA kernels for {qtype.name}; supported: {', '.join(t.name for t in SUPPORTED)}")
        block, type_size = GGML_QUANT_SIZES[qtype]
        if rows < 1 or cols < block or cols % block:
            raise ValueError(f"{qtype.name} matrix [{rows}, {cols}]: cols must be a positive multiple of {block}")
        if not isinstance(raw, torch.Tensor):
            raw = torch.from_numpy(raw)
        if raw.dtype != torch.uint8:
            raise TypeError(f"raw GGUF bytes must be uint8, got {raw.dtype}")
        nb = cols // block
        if raw.numel() != rows * nb * type_size:
            raise ValueError(f"{qtype.name} [{rows}, {cols}] needs {rows * nb * type_size} bytes, got {raw.numel()}")
        dev = torch.device(device) if device is not None else (raw.device if raw.is_cuda else torch.device("cuda"))
        if dev.type != "cuda":
            raise ValueError(f"QuantMatrix lives on a CUDA device, not {dev}")
        blocks = raw.reshape(rows, nb, type_size).to(dev)
        if qtype == GGMLQuantizationType.Q4_K:
            planes = _q4_k_planes(blocks)
        elif qtype in (GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q8_0):
            planes = (_plane(blocks[:, :, 2:]), _half_plane(blocks[:, :, :2]))  # quants, d
        else:
            planes = _q6_k_planes(blocks)
        return cls(qtype, rows, cols, planes)


def _q6_k_planes(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q6_k.cuh's planes from the file's super-blocks [rows, nsb, 210]: per pair of 32-weight chunks their low nibbles
    (16 bytes each, Q4_0's order) then their top 2 bits (8 bytes each), the scales [rows, nsb, 16] as they are, d."""
    rows, nsb, _ = blocks.shape
    ql = blocks[:, :, :128].reshape(rows, nsb, 2, 2, 32)  # [.., half n, ql[64n + 32 m + l]: m, l]
    qh = blocks[:, :, 128:192].reshape(rows, nsb, 2, 1, 32)  # [.., n, 1, l]
    # element 128n + 32 k + l for k = 0..3: ql[64n + 32 (k % 2) + l] nibble k // 2, qh[32n + l] bits 2k .. 2k + 1
    lo = torch.cat([ql & 15, ql >> 4], dim=3)  # [rows, nsb, n, k, l]
    hi = torch.cat([(qh >> (2 * k)) & 3 for k in range(4)], dim=3)
    q = (lo | (hi << 4)).reshape(rows, nsb * 8, 32)  # [rows, nch, 32]: chunk c = elements 32c .. 32c + 31
    low, top = q & 15, q >> 4
    nib = low[..., :16] | (low[..., 16:] << 4)  # [rows, nch, 16]: byte i = element i | element i + 16 << 4
    t = top.reshape(rows, nsb * 8, 4, 2, 4)  # [.., field f (element 8f + 4k + i), word k, byte i]
    hw = t[:, :, 0] | (t[:, :, 1] << 2) | (t[:, :, 2] << 4) | (t[:, :, 3] << 6)  # [rows, nch, k, i]
    # per pair of chunks: both chunks' 16 nibble bytes, then both chunks' 8 top-bit bytes
    pairs = torch.cat([nib.reshape(rows, nsb * 4, 32), hw.reshape(rows, nsb * 4, 16)], dim=2)  # [rows, nch / 2, 48]
    return _plane(pairs.to(torch.uint8)), _plane(blocks[:, :, 192:208]), _half_plane(blocks[:, :, 208:])


def _plane(t: torch.Tensor) -> torch.Tensor:
    """A fresh contiguous copy (16-byte aligned: .contiguous() may return a view at an odd offset)."""
    out = torch.empty(t.numel(), dtype=torch.uint8, device=t.device)
    out.view(t.shape).copy_(t)
    return out


def _q4_k_planes(blocks: torch.Tensor) -> tuple[torch.Tensor]:
    """q4_k.cuh's plane from the file's super-blocks [rows, nsb, 144], the same size: per super-block d | dmin, the
    low 4 bits of each sub-block's scale and min (one byte per sub-block), their top 2 bits (a nibble per sub-block),
    then each sub-block's nibbles in Q4_0's order."""
    from awq_gguf.convert.quants.k_common import unpack_scales_k4

    rows, nsb, _ = blocks.shape
    sc, mn = (t.reshape(rows, nsb, 8) for t in unpack_scales_k4(blocks[:, :, 4:16].reshape(-1, 12)))  # uint8 0..63
    low = (sc & 15) | ((mn & 15) << 4)  # [rows, nsb, 8]: bytes 4..11
    top = (sc >> 4) | ((mn >> 4) << 2)  # [rows, nsb, 8]: nibble j of bytes 12..15
    top = top[:, :, 0::2] | (top[:, :, 1::2] << 4)  # [rows, nsb, 4]
    q = blocks[:, :, 16:].reshape(rows, nsb, 4, 32)  # byte 32g + l: element 64g + l low, 64g + 32 + l high
    sub = torch.stack([q & 15, q >> 4], dim=3).reshape(rows, nsb, 8, 32)  # [.., j, element of sub-block j]
    nib = sub[..., :16] | (sub[..., 16:] << 4)  # [rows, nsb, 8, 16]: byte i = element i | element i + 16 << 4
    out = torch.cat([blocks[:, :, :4], low, top, nib.reshape(rows, nsb, 128)], dim=2)
    return (_plane(out),)


def _half_plane(t: torch.Tensor) -> torch.Tensor:
    """A plane of 2-byte entries, padded with at least one zero entry (the register kernels read aligned 4-byte
    words) to a multiple of 16 bytes (the stream kernel copies 16-byte aligned spans around each row's entries)."""
    out = torch.zeros((t.numel() + 2 + 15) // 16 * 16, dtype=torch.uint8, device=t.device)
    out[: t.numel()].view(t.shape).copy_(t)
    return out


def _check(code: int, what: str) -> None:
    if code:
        _, lib = load()
        msg = load()[0].string(lib.awq_cuda_error_string(code)).decode()
        raise RuntimeError(f"{what} failed: CUDA kernels returned {code} ({msg})")


def _pointers(ffi, w: QuantMatrix):
    ptrs = [ffi.cast("const void*", p.data_ptr()) for p in w.planes]
    return ptrs + [ffi.NULL] * (3 - len(ptrs))


def _stream(ffi, device: torch.device):
    return ffi.cast("void*", torch.cuda.current_stream(device).cuda_stream)


def _check_tensor(t: torch.Tensor, name: str, w: QuantMatrix) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(t).__name__}")
    if t.device != w.device:
        raise ValueError(f"{name} is on {t.device}, the weights on {w.device}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous")


# gemv modes (gemv.cuh): 1 register prefetch, 2 cp.async ring, 3 = 1 with the factored batch-1 arithmetic (float32
# activations inside, exact to ~1e-6); 4 int8 activations (x rounded per 32 values as llama.cpp's q8 blocks, dp4a),
# 5 = 4 with programmatic dependent launch, 6 = 5 with twice the weights in flight per warp, 7 = 5 with a
# block's 4 warps splitting each row group's columns, 8 = 5 capped at 64 registers (2x the resident warps),
# 9 = 7 + 8; 10, 11 = the stream kernel (batch 1 only, else 7: x rounded inside the one kernel, weights streamed
# through per-warp shared-memory rings by bulk copies; 10: 8 warps a block, 11: 16) (gemv.cuh, gemv_stream.cuh);
# 12-15 = 5, 6, 7 and 7 with 8 row-chunks per lane, chained: the rounding kernel launched with PDL as well and the
# GEMV letting its successor start at once, so a chain of products overlaps; 16-19 (batch 1; 7 above) = 12 and 14
# at <= 96 registers (5 blocks per SM, Q4_0's residency), 12 and 14 at <= 128 (4 blocks per SM).
# mode=0 lets the library pick per type, shape and batch among the q8 modes (BATCH1_DEFAULT and BATCH1_RULES at batch 1, 7
# above; gemv.cuh's launch_gemv); DEFAULT_MODE says which family that is, for callers that must know how x is treated.
FLOAT_MODES = (1, 2, 3)
Q8_MODES = (4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19)
STREAM_MODES = (10, 11)
DEFAULT_MODE = 5
# (mode, nr) that mode 0 runs at batch 1, per type (tunable here without rebuilding the library): the chained register
# kernels (12-15); Q4_0 and Q8_0 with the block's warps splitting each row group's columns (14); Q4_K and Q6_K, with more
# arithmetic per byte, without the split's barrier (12), except where BATCH1_RULES say otherwise. Where the GEMV
# benchmark and the GPU runner's decode step disagree, the runner decides, measured with the variants' graphs replayed
# in turn (the card throttles within seconds of sustained decode, so variants timed one after another favour the
# first): tools/bench_gpu_defaults.py runner, whose variant rules have BATCH1_RULES' form. BENCHMARKS.md cuda-kernels
# and gpu-runner hold the measurements.
BATCH1_DEFAULT: dict[GGMLQuantizationType, tuple[int, int]] = {
    GGMLQuantizationType.Q4_0: (14, 4), GGMLQuantizationType.Q8_0: (14, 4),
    GGMLQuantizationType.Q4_K: (12, 4), GGMLQuantizationType.Q6_K: (12, 4),
}


@dataclass(frozen=True)
class ShapeRule:
    """At batch 1, matrices of `qtype` of this shape kind (wide: cols > rows, square, tall: rows > cols) with at most
    `max_rows` rows (0: any) run `mode` with `nr` rows per warp instead of BATCH1_DEFAULT."""

    qtype: GGMLQuantizationType
    kind: str
    mode: int
    nr: int = 4
    max_rows: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("wide", "square", "tall"):
            raise ValueError(f"ShapeRule kind must be wide, square or tall, got {self.kind!r}")
        if self.mode not in Q8_MODES or self.nr not in (1, 2, 4) or self.max_rows < 0:
            raise ValueError(f"ShapeRule needs an int8 mode (4..19), nr 1, 2 or 4 and max_rows >= 0, got mode "
                             f"{self.mode}, nr {self.nr}, max_rows {self.max_rows}")

    def matches(self, qtype: GGMLQuantizationType, rows: int, cols: int) -> bool:
        kind = "wide" if cols > rows else "tall" if rows > cols else "square"
        return qtype == self.qtype and self.kind == kind and (not self.max_rows or rows <= self.max_rows)


# First match wins; each was A/B'd in the GPU runner (H100, 2026-11-28, decode-step graphs replayed in turn):
# - wide matrices (few row groups): Q4_K split (14; TinyLlama-shape step 795 -> 778 us, Llama-2-7B shapes in 4 layers
#   352 -> 351, 00:5x UTC), Q6_K split at <= 128 registers (19; 704 -> 688 / 327 -> 327, 01:0x UTC);
# - square: Q6_K split (14; x pre-rounded 4096x4096 5.96 -> 5.30 us; 7B step 340-344 -> 337-341 us, TinyLlama has none),
#   Q4_K split up to 2048 rows (14; 2048x2048 2.50 -> 1.78 us; TinyLlama step 733 -> 724-729 us). On 4096x4096 Q4_K's
#   split is faster alone (4.96 -> 4.64 us) but not in the 7B step (340.1 -> 340.5 us), so it stays 12 there.
#   Tall matrices up to 12288 rows ran faster alone with 13 or with 2 rows per warp and made both steps slower (TinyLlama
#   736 -> 748 / 739 us, 05:2x UTC): 12 stays.
BATCH1_RULES: tuple[ShapeRule, ...] = (
    ShapeRule(GGMLQuantizationType.Q4_K, "wide", 14),
    ShapeRule(GGMLQuantizationType.Q6_K, "wide", 19),
    ShapeRule(GGMLQuantizationType.Q6_K, "square", 14),
    ShapeRule(GGMLQuantizationType.Q4_K, "square", 14, max_rows=2048),
)


def resolve_mode(w: QuantMatrix, batch: int, nr: int, mode: int) -> tuple[int, int]:
    """(nr, mode) to pass to the library: mode 0 at batch 1 becomes the first matching BATCH1_RULES entry's, else the
    type's BATCH1_DEFAULT (0, 0 for types without one: the library picks)."""
    if mode == 0 and batch == 1 and nr == 0:
        for rule in BATCH1_RULES:
            if rule.matches(w.qtype, w.rows, w.cols):
                return rule.nr, rule.mode
        mode, nr = BATCH1_DEFAULT.get(w.qtype, (0, 0))
    return nr, mode


def workspace_bytes(batch: int, cols: int) -> int:
    """Device scratch the int8-activation modes need: x rounded to int8 [batch, cols] + float32 scales per 32."""
    return batch * cols + batch * (cols // 32) * 4


def round_activations_q8(x: torch.Tensor) -> torch.Tensor:
    """The activations modes 4/5 multiply with, as float32: per 32 values d = max|x| / 127 and
    q = round-half-even(x * (127 / max|x|)) in float32, x_hat = q * d (NaN blocks stay NaN)."""
    xf = x.float().reshape(*x.shape[:-1], x.shape[-1] // 32, 32)
    amax = xf.abs().amax(-1, keepdim=True)
    c127 = torch.full_like(amax, 127.0)  # tensor / tensor: an IEEE division (torch multiplies by 1/scalar)
    inv = torch.where(amax > 0, c127 / amax, torch.zeros_like(amax))
    q = torch.round(xf * inv)
    return (q * (amax / c127)).reshape(x.shape)


def gemv(x: torch.Tensor, w: QuantMatrix, out: torch.Tensor | None = None, nr: int = 0, mode: int = 0
         ) -> torch.Tensor:
    """x fp16/bf16 [batch, cols] (batch 1..16, or [cols]) -> float32 [batch, rows] (or [rows]) = x @ W^T; in the
    int8-activation modes (the default) x may also be float32, rounded to int8 from float32 directly.

    The default (mode 0, the q8 family: DEFAULT_MODE) rounds x to int8 per 32 values first, as llama.cpp's CUDA
    and CPU GEMV and this project's CPU kernels do (relative error ~5e-3 on Gaussian activations, ~1e-2 with
    outlier channels; round_activations_q8 gives the x it uses); modes 1-3 keep x in float32 (~1e-6). out: optional float32 [batch, rows] to write into. For
    benchmarking: nr = rows per warp (1, 2 or 4), mode = 1 (register prefetch), 2 (cp.async ring), 3 (1 with the
    factored batch-1 arithmetic), 4 (int8 activations, dp4a), 5 (4 with programmatic dependent launch), 6 (5 with twice the
    weights in flight), 7 (5, columns split over a block's warps), 8 (5 at <= 64 registers), 9 (7 + 8), 10 / 11 (the
    stream kernel at batch 1: one kernel, x rounded in it, weights through per-warp shared-memory rings; nr 1, 2
    or 4 rows per warp; mode 7 above batch 1), 12-15 (5, 6, 7, 7 deep: chained with the next call), 16-19 (batch 1,
    7 above: 12 and 14 capped at 96 registers, 12 and 14 capped at 128); 0 = the default of each (BATCH1_RULES /
    BATCH1_DEFAULT at batch 1, 7 above)."""
    ffi, lib = load()
    squeeze = x.dim() == 1
    if squeeze:
        x = x.unsqueeze(0)
    _check_tensor(x, "x", w)
    q8 = mode in Q8_MODES or (mode == 0 and DEFAULT_MODE in Q8_MODES)
    if x.dtype not in _ACT and not (q8 and x.dtype in _ACT_Q8_ONLY):
        kinds = "float16, bfloat16 or float32" if q8 else "float16 or bfloat16 (float32 needs an int8 mode)"
        raise TypeError(f"x must be {kinds}, got {x.dtype}")
    if x.dim() != 2 or x.shape[1] != w.cols:
        raise ValueError(f"x has shape {tuple(x.shape)}, expected [batch, {w.cols}]")
    batch = x.shape[0]
    if not 1 <= batch <= MAX_GEMV_BATCH:
        raise ValueError(f"gemv takes 1..{MAX_GEMV_BATCH} rows of x, got {batch}; use matmul")
    if x.data_ptr() % 16:
        raise ValueError("x must be 16-byte aligned (a fresh or .contiguous() tensor is)")
    if nr not in (0, 1, 2, 4):
        raise ValueError(f"nr must be 0, 1, 2 or 4, got {nr}")
    if mode not in (0, *FLOAT_MODES, *Q8_MODES):
        raise ValueError(f"mode must be 0..19, got {mode}")
    if out is None:
        out = torch.empty(batch, w.rows, dtype=torch.float32, device=x.device)
    else:
        _check_tensor(out, "out", w)
        if out.dtype != torch.float32 or tuple(out.shape) != (batch, w.rows):
            raise ValueError(f"out must be float32 [{batch}, {w.rows}], got {out.dtype} {tuple(out.shape)}")
    p0, p1, p2 = _pointers(ffi, w)
    ws, ws_ptr, ws_bytes = None, ffi.NULL, 0
    if q8:
        nr, mode = resolve_mode(w, batch, nr, mode)
        ws_bytes = workspace_bytes(batch, w.cols)
        ws = torch.empty(ws_bytes, dtype=torch.uint8, device=x.device)  # the caching allocator: 512-byte aligned
        ws_ptr = ffi.cast("void*", ws.data_ptr())
    with torch.cuda.device(x.device):
        act = _ACT[x.dtype] if x.dtype in _ACT else _ACT_Q8_ONLY[x.dtype]
        code = lib.awq_cuda_gemv(int(w.qtype), p0, p1, p2, ffi.cast("const void*", x.data_ptr()), act,
                                 ffi.cast("float*", out.data_ptr()), w.rows, w.cols, batch, nr,
                                 mode, ws_ptr, ws_bytes, _stream(ffi, x.device))
    _check(code, f"gemv {w.qtype.name} [{w.rows}, {w.cols}] batch {batch}")
    return out.squeeze(0) if squeeze else out


def dequantize(w: QuantMatrix, dtype: torch.dtype = torch.float16, out: torch.Tensor | None = None) -> torch.Tensor:
    """The whole matrix as dtype (float16, bfloat16 or float32) [rows, cols], on w's device."""
    ffi, lib = load()
    if dtype not in _OUT:
        raise TypeError(f"dequantize to float16, bfloat16 or float32, not {dtype}")
    if out is None:
        out = torch.empty(w.rows, w.cols, dtype=dtype, device=w.device)
    else:
        _check_tensor(out, "out", w)
        if out.dtype != dtype or tuple(out.shape) != (w.rows, w.cols):
            raise ValueError(f"out must be {dtype} [{w.rows}, {w.cols}], got {out.dtype} {tuple(out.shape)}")
        if out.data_ptr() % 16:  # the kernel stores 16-byte words
            raise ValueError("out must be 16-byte aligned (a fresh or .contiguous() tensor is)")
    p0, p1, p2 = _pointers(ffi, w)
    with torch.cuda.device(w.device):
        code = lib.awq_cuda_dequant(int(w.qtype), p0, p1, p2, ffi.cast("void*", out.data_ptr()), _OUT[dtype],
                                    w.rows, w.cols, _stream(ffi, w.device))
    _check(code, f"dequantize {w.qtype.name} [{w.rows}, {w.cols}]")
    return out


def matmul(x: torch.Tensor, w: QuantMatrix) -> torch.Tensor:
    """x fp16/bf16 [..., cols] -> [..., rows] in x's dtype: the GEMV kernel for up to 16 rows of x, else the
    dequantize-then-torch.matmul prompt path."""
    if not isinstance(x, torch.Tensor) or x.dtype not in _ACT:
        raise TypeError("x must be a float16 or bfloat16 torch tensor")
    if x.shape[-1] != w.cols:
        raise ValueError(f"x has {x.shape[-1]} columns, the weights {w.cols}")
    lead = x.shape[:-1]
    flat = x.reshape(-1, w.cols)
    n = flat.shape[0]
    if n == 0:
        return x.new_empty(*lead, w.rows)
    if n <= MAX_GEMV_BATCH:
        y = gemv(flat.contiguous(), w).to(x.dtype)
    else:
        y = torch.matmul(flat, dequantize(w, x.dtype).T)
    return y.reshape(*lead, w.rows)


def read_probe(buf: torch.Tensor, out: torch.Tensor) -> None:
    """Read every byte of buf (a contiguous CUDA tensor, 16-byte aligned, a multiple of 16 bytes) and xor them into
    out (int32 [64], same device), launched like the chained GEMVs: the bandwidth ceiling of tools/bench_cuda.py."""
    ffi, lib = load()
    if not isinstance(buf, torch.Tensor) or not buf.is_cuda or not buf.is_contiguous():
        raise ValueError("buf must be a contiguous CUDA tensor")
    nbytes = buf.numel() * buf.element_size()
    if nbytes < 16 or nbytes % 16 or buf.data_ptr() % 16:
        raise ValueError(f"buf must be 16-byte aligned and a multiple of 16 bytes, got {nbytes} bytes")
    if out.device != buf.device or out.dtype != torch.int32 or out.numel() < 64 or not out.is_contiguous():
        raise ValueError("out must be a contiguous int32 tensor of at least 64 elements on buf's device")
    with torch.cuda.device(buf.device):
        code = lib.awq_cuda_read_probe(ffi.cast("const void*", buf.data_ptr()), nbytes,
                                       ffi.cast("unsigned*", out.data_ptr()), _stream(ffi, buf.device))
    _check(code, f"read_probe of {nbytes} bytes")
