// Matrix-vector products for decode: y[b, row] = sum_k W[row, k] x[b, k] for a batch of 1..16 activation rows,
// W in a GGUF block format (the Fmt* headers), x fp16 or bf16 [batch, cols], y float32 [batch, rows].
//
// One warp owns NR consecutive output rows and walks them together; lane l takes chunks l, l + 32, ... (32
// weights each), so one warp-wide load covers 32 consecutive chunks of a row. U chunks per lane (times NR rows)
// are loaded before any is used, to keep enough bytes in flight. Each weight is dequantized once (one byte
// permute and one FMA, see common.cuh) and then multiplied into every batch row with float32 FMAs; activations
// come through L1 (all warps of the block read the same x) and are converted once per NR rows. Accumulators
// are float32 per (row, batch); the warp's partial sums are reduced with shuffles at the end.
#pragma once

#include "common.cuh"

namespace awq {

constexpr int kGemvWarps = 4;

// Persistent warps: warp w of W takes row groups w, w + W, ... (NR rows each). A row group is `steps` steps;
// step s covers chunks lane + 32 (s U + u), u < U. The loads of the next step (which may belong to the next
// row group) are issued before the current step is computed, so every warp keeps one step of weights in flight
// while it does arithmetic: no load/compute convoys.
template <class F, int ACT, int BMAX, int NR>
__global__ void __launch_bounds__(32 * kGemvWarps)
    gemv_kernel(Planes w, const uint16_t* __restrict__ x, float* __restrict__ y, int rows, int cols, int batch) {
    constexpr int U = NR >= 4 ? 1 : 4 / NR;
    const int lane = threadIdx.x & 31;
    const int nch = cols >> 5;
    const int steps = (nch + 32 * U - 1) / (32 * U);
    const int groups = (rows + NR - 1) / NR;
    const int warp0 = blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
    const int nwarps = gridDim.x * kGemvWarps;
    if (warp0 >= groups) return;
    const long long total = static_cast<long long>((groups - 1 - warp0) / nwarps + 1) * steps;

    typename F::Raw cur[U][NR], nxt[U][NR];
    auto load_step = [&](typename F::Raw(&raw)[U][NR], int g, int s) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int c = lane + 32 * (s * U + u);
            if (c < nch) {
#pragma unroll
                for (int r = 0; r < NR; ++r) F::load(raw[u][r], w, min(g * NR + r, rows - 1), c, nch);
            }
        }
    };

    float acc[NR][BMAX];
#pragma unroll
    for (int r = 0; r < NR; ++r)
#pragma unroll
        for (int b = 0; b < BMAX; ++b) acc[r][b] = 0.0f;

    int g = warp0, s = 0;
    load_step(cur, g, s);
    for (long long it = 0; it < total; ++it) {
        int gn = g, sn = s + 1;
        if (sn == steps) {
            sn = 0;
            gn += nwarps;
        }
        if (it + 1 < total) load_step(nxt, gn, sn);

#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int c = lane + 32 * (s * U + u);
            if (c < nch) {
                typename F::Prep pre[NR];
#pragma unroll
                for (int r = 0; r < NR; ++r) F::prep(pre[r], cur[u][r]);
#pragma unroll
                for (int P = 0; P < 4; ++P) {
                    float wv[NR][8];
#pragma unroll
                    for (int r = 0; r < NR; ++r) F::piece(cur[u][r], pre[r], P, wv[r]);
                    const uint16_t* xp = x + F::col(c, P);
#pragma unroll
                    for (int b = 0; b < BMAX; ++b) {
                        if (b < batch) {
                            float xf[8];
                            load_x8<ACT>(xp + static_cast<size_t>(b) * cols, xf);
#pragma unroll
                            for (int r = 0; r < NR; ++r)
#pragma unroll
                                for (int i = 0; i < 8; ++i) acc[r][b] = fmaf(wv[r][i], xf[i], acc[r][b]);
                        }
                    }
                }
            }
        }

        if (s == steps - 1) {  // row group done: reduce across the warp, store, start the next
            const int row0 = g * NR;
#pragma unroll
            for (int r = 0; r < NR; ++r) {
#pragma unroll
                for (int b = 0; b < BMAX; ++b) {
                    float v = acc[r][b];
#pragma unroll
                    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, off);
                    if (lane == 0 && b < batch && row0 + r < rows) y[static_cast<size_t>(b) * rows + row0 + r] = v;
                    acc[r][b] = 0.0f;
                }
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
            for (int r = 0; r < NR; ++r) cur[u][r] = nxt[u][r];
        g = gn;
        s = sn;
    }
}


template <class F, int ACT, int BMAX, int NR>
cudaError_t launch_gemv_t(Planes w, const void* x, float* y, int rows, int cols, int batch, cudaStream_t s) {
    static int per_sm = 0;  // resident blocks per SM of this instantiation (same on every Hopper card)
    if (per_sm == 0) {
        int n = 0;
        cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_kernel<F, ACT, BMAX, NR>,
                                                                      32 * kGemvWarps, 0);
        if (e != cudaSuccess) return e;
        per_sm = n > 0 ? n : 1;
    }
    const int groups = (rows + NR - 1) / NR;
    const int needed = (groups + kGemvWarps - 1) / kGemvWarps;
    const int resident = per_sm * sm_count();
    const dim3 grid(needed < resident ? needed : resident);
    gemv_kernel<F, ACT, BMAX, NR>
        <<<grid, 32 * kGemvWarps, 0, s>>>(w, static_cast<const uint16_t*>(x), y, rows, cols, batch);
    return cudaGetLastError();
}

template <class F, int ACT, int BMAX>
cudaError_t launch_gemv_nr(Planes w, const void* x, float* y, int rows, int cols, int batch, int nr,
                           cudaStream_t s) {
    switch (nr) {
        case 1: return launch_gemv_t<F, ACT, BMAX, 1>(w, x, y, rows, cols, batch, s);
        case 2: return launch_gemv_t<F, ACT, BMAX, 2>(w, x, y, rows, cols, batch, s);
        case 4: return launch_gemv_t<F, ACT, BMAX, 4>(w, x, y, rows, cols, batch, s);
        default: return cudaErrorInvalidValue;
    }
}

template <class F, int ACT>
cudaError_t launch_gemv_b(Planes w, const void* x, float* y, int rows, int cols, int batch, int nr,
                          cudaStream_t s) {
    if (batch <= 1) return launch_gemv_nr<F, ACT, 1>(w, x, y, rows, cols, batch, nr, s);
    if (batch <= 2) return launch_gemv_nr<F, ACT, 2>(w, x, y, rows, cols, batch, nr, s);
    if (batch <= 4) return launch_gemv_nr<F, ACT, 4>(w, x, y, rows, cols, batch, nr, s);
    if (batch <= 8) return launch_gemv_nr<F, ACT, 8>(w, x, y, rows, cols, batch, nr, s);
    return launch_gemv_nr<F, ACT, 16>(w, x, y, rows, cols, batch, nr, s);
}

// The entry each format's .cu instantiates. nr <= 0 picks the default rows-per-warp for the batch.
template <class F>
cudaError_t launch_gemv(Planes w, const void* x, int act, float* y, int rows, int cols, int batch, int nr,
                        cudaStream_t s) {
    if (batch < 1 || batch > 16 || rows < 1 || cols < 32 || cols % 32) return cudaErrorInvalidValue;
    if (nr <= 0) nr = batch <= 2 ? 1 : 2;
    if (act == ACT_BF16) return launch_gemv_b<F, ACT_BF16>(w, x, y, rows, cols, batch, nr, s);
    if (act == ACT_F16) return launch_gemv_b<F, ACT_F16>(w, x, y, rows, cols, batch, nr, s);
    return cudaErrorInvalidValue;
}

}  // namespace awq
