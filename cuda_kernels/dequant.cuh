// Dequantization of a whole GGUF-block matrix to fp16, bf16 or float32 [rows, cols]: the first half of the
// prompt (matrix-matrix) path, which then multiplies with torch (cuBLAS). One thread per 32-weight chunk, the
// same formats and arithmetic as the GEMV, so a float32 result is the GEMV's own view of the weights.
#pragma once

#include "common.cuh"

namespace awq {

// Every format's chunk c of a row is its columns 32c .. 32c + 31 (F::col(c, P) = 32c + 8P), so chunk idx = row * nch
// + c lands at element 32 idx of the row-major output: a block's 256 chunks are one contiguous span. Each thread
// converts its chunk into shared memory, then the block writes the span with 16-byte stores side by side (a thread
// storing its own 64 or 128 bytes directly would put a warp's stores 64 bytes apart: half the sectors per request).
template <class F, int OUT>
__global__ void __launch_bounds__(256) dequant_kernel(Planes w, void* __restrict__ out, int rows, int cols) {
    constexpr int esize = OUT == OUT_F32 ? 4 : 2;
    constexpr int kChunkBytes = 32 * esize;
    __shared__ __align__(16) char stage[256 * kChunkBytes];  // 16 KiB (fp16 / bf16) or 32 KiB (float32)
    const int nch = cols >> 5;
    const long long n = static_cast<long long>(rows) * nch;
    const long long first = static_cast<long long>(blockIdx.x) * blockDim.x;
    const long long idx = first + threadIdx.x;
    if (idx < n) {
        const int row = static_cast<int>(idx / nch), c = static_cast<int>(idx % nch);
        typename F::Raw raw;
        F::load(raw, w, row, c, nch);
        typename F::Prep pre;
        F::prep(pre, raw);
#pragma unroll
        for (int P = 0; P < 4; ++P) {
            float v[8];
            F::piece(raw, pre, P, v);
            store8<OUT>(stage + threadIdx.x * kChunkBytes + 8 * P * esize, v);
        }
    }
    __syncthreads();
    const long long chunks = n - first < 256 ? n - first : 256;
    const int words = static_cast<int>(chunks * (kChunkBytes / 16));  // 16-byte words of this block's span
    uint4* dst = reinterpret_cast<uint4*>(static_cast<char*>(out) + first * kChunkBytes);
    const uint4* src = reinterpret_cast<const uint4*>(stage);
    for (int i = threadIdx.x; i < words; i += 256) dst[i] = src[i];
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
