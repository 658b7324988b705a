// Dequantization of a whole GGUF-block matrix to fp16, bf16 or float32 [rows, cols]: the first half of the
// prompt (matrix-matrix) path, which then multiplies with torch (cuBLAS). One thread per 32-weight chunk, the
// same formats and arithmetic as the GEMV, so a float32 result is the GEMV's own view of the weights.
#pragma once

#include "common.cuh"

namespace awq {

template <class F, int OUT>
__global__ void __launch_bounds__(256) dequant_kernel(Planes w, void* __restrict__ out, int rows, int cols) {
    const int nch = cols >> 5;
    const long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= static_cast<long long>(rows) * nch) return;
    const int row = static_cast<int>(idx / nch), c = static_cast<int>(idx % nch);
    typename F::Raw raw;
    F::load(raw, w, row, c, nch);
    typename F::Prep pre;
    F::prep(pre, raw);
    constexpr int esize = OUT == OUT_F32 ? 4 : 2;
    char* base = static_cast<char*>(out) + static_cast<size_t>(row) * cols * esize;
#pragma unroll
    for (int P = 0; P < 4; ++P) {
        float v[8];
        F::piece(raw, pre, P, v);
        store8<OUT>(base + static_cast<size_t>(F::col(c, P)) * esize, v);
    }
}

template <class F>
cudaError_t launch_dequant(Planes w, void* out, int out_type, int rows, int cols, cudaStream_t s) {
    if (rows < 1 || cols < 32 || cols % 32) return cudaErrorInvalidValue;
    const long long n = static_cast<long long>(rows) * (cols / 32);
    const dim3 grid(static_cast<unsigned>((n + 255) / 256));
    switch (out_type) {
        case OUT_F16: dequant_kernel<F, OUT_F16><<<grid, 256, 0, s>>>(w, out, rows, cols); break;
        case OUT_BF16: dequant_kernel<F, OUT_BF16><<<grid, 256, 0, s>>>(w, out, rows, cols); break;
        case OUT_F32: dequant_kernel<F, OUT_F32><<<grid, 256, 0, s>>>(w, out, rows, cols); break;
        default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

}  // namespace awq
