// Matrix-vector products for decode: y[b, row] = sum_k W[row, k] x[b, k] for a batch of 1..16 activation rows,
// W in a GGUF block format (the Fmt* headers), x fp16 or bf16 [batch, cols], y float32 [batch, rows].
//
// One warp owns NR consecutive output rows and walks them together; lane l takes chunks l, l + 32, ... (32
// weights each), so one warp-wide load covers 32 consecutive chunks of a row. Each weight is dequantized once
// (one byte permute and one FMA, see common.cuh) and then multiplied into every batch row with float32 FMAs;
// activations come through L1 (all warps of the block read the same x) and are converted once per NR rows.
// Accumulators are float32 per (row, batch); a row group's partial sums are reduced with warp shuffles.
//
// Two ways to keep weight bytes in flight (mode):
//   1 "regs":  the next step's weights are loaded into registers before the current step is computed.
//   2 "async": a ring of kStages shared-memory stages per warp filled with cp.async (each lane copies and later
//              reads only its own slot, so no barrier): kStages - 1 steps in flight without holding registers.
//   3 "fact":  as 1, and at batch 1 the factored arithmetic of compute_chunk (Q4_0, Q4_K, Q6_K; else as 1).
//   4 "q8":    int8 activations, as llama.cpp's mmvq: a first kernel rounds x to int8 per 32 values
//              (d = max|x| / 127, q = round-half-even(x * 127 / max|x|)) into the caller's workspace; the GEMV
//              multiplies the weights' small integers with them by dp4a (4 products per instruction), exact
//              integer dot products per 8-weight piece, float32 scales and accumulation. About 0.6 integer
//              instructions per weight instead of 3.5-5, but x is rounded (relative ~5e-3, as llama.cpp's CUDA
//              and CPU paths and this project's CPU kernels do).
//   5 "q8 pdl": 4 with programmatic dependent launch: the GEMV grid starts while the rounding kernel runs,
//              issues its first weight loads, then waits for the rounded x (griddepcontrol).
//   6 "q8 deep": 5 with twice the weights in flight per warp (8 row-chunks per step instead of 4).
//   7 "q8 split": 5 with the 4 warps of a block splitting each row group's columns (4x the warps in flight
//              for matrices of few rows), partial sums added through shared memory.
//   8 "q8 cap":  5 compiled for 8 resident blocks per SM (at most 64 registers: 2x the warps).
//   9 "q8 split cap": 7 and 8 together.
//  10, 11 "stream": batch 1 only (above, mode 7): one kernel that rounds x into shared memory itself and streams the
//              weights through per-warp shared-memory rings filled by the copy engine (gemv_stream.cuh); 10 = 8 warps
//              a block, 11 = 16. Not the default (see launch_gemv).
//  12-15 "chain": 5, 6, 7 and 7 with 8 row-chunks per lane, with the rounding kernel launched with PDL too and
//              the GEMV letting its successor start at once, so in a chain of products a GEMV's first loads overlap
//              the previous one's tail.
//  16-19: batch 1 only (above, mode 7): 16 = 12 and 17 = 14 compiled for 5 resident blocks per SM (at most 96
//              registers: Q4_0's residency for Q4_K and Q6_K), 18 = 12 and 19 = 14 for 4 (at most 128). (Until the
//              Q4_K re-layout of q4_k.cuh, 18 and 19 ran Q4_K on 64-weight chunks of the file's order: NOTES.md v8;
//              16 and 17 were 12 and 13 at batch 1 until v12.)
#pragma once

#include <type_traits>

#include "common.cuh"
#include "gemv_stream.cuh"

namespace awq {

constexpr int kGemvWarps = 4;

// Compile-time dispatch of the launchers: fn(std::integral_constant<int, N>) for the rows per warp nr (1, 2, 4) and
// for the smallest batch bound BMAX (1, 2, 4, 8, 16) holding `batch` rows.
template <class Fn>
cudaError_t with_nr(int nr, Fn&& fn) {
    switch (nr) {
        case 1: return fn(std::integral_constant<int, 1>{});
        case 2: return fn(std::integral_constant<int, 2>{});
        case 4: return fn(std::integral_constant<int, 4>{});
        default: return cudaErrorInvalidValue;
    }
}
template <class Fn>
cudaError_t with_bmax(int batch, Fn&& fn) {
    if (batch <= 1) return fn(std::integral_constant<int, 1>{});
    if (batch <= 2) return fn(std::integral_constant<int, 2>{});
    if (batch <= 4) return fn(std::integral_constant<int, 4>{});
    if (batch <= 8) return fn(std::integral_constant<int, 8>{});
    return fn(std::integral_constant<int, 16>{});
}

// One chunk c (32 weights) of NR rows into acc, for `batch` activation rows.
// FACT (batch 1, formats with kFactored): the scale is factored out of each 8-weight piece,
//   sum_i (A v_i - C) x_i = A * sum_i v_i x_i - C * sum_i x_i,
// one FMA per weight instead of two; sum_i x_i is shared by the NR rows. The two terms nearly cancel
// (v = 1 + q/128): about 7 of float32's 24 bits go, far below the tests' 2e-5.
template <class F, int ACT, int BMAX, int NR, bool FACT = false>
__device__ __forceinline__ void compute_chunk(const typename F::Raw (&raw)[NR], int c, const uint16_t* __restrict__ x,
                                              int cols, int batch, float (&acc)[NR][BMAX]) {
    typename F::Prep pre[NR];
#pragma unroll
    for (int r = 0; r < NR; ++r) F::prep(pre[r], raw[r]);
    if constexpr (FACT) {
#pragma unroll
        for (int P = 0; P < 4; ++P) {
            float xf[8];
            load_x8<ACT>(x + F::col(c, P), xf);
            const float sx = ((xf[0] + xf[1]) + (xf[2] + xf[3])) + ((xf[4] + xf[5]) + (xf[6] + xf[7]));
#pragma unroll
            for (int r = 0; r < NR; ++r) {
                float v[8];
                F::units(raw[r], P, v);
                float sv = 0.0f;
#pragma unroll
                for (int i = 0; i < 8; ++i) sv = fmaf(v[i], xf[i], sv);
                acc[r][0] = fmaf(F::scale_a(pre[r], P), sv, fmaf(-F::scale_c(pre[r], P), sx, acc[r][0]));
            }
        }
    } else {
#pragma unroll
    for (int P = 0; P < 4; ++P) {
        float wv[NR][8];
#pragma unroll
        for (int r = 0; r < NR; ++r) F::piece(raw[r], pre[r], P, wv[r]);
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

// Warp-reduce the row group's sums, store them (lane 0), zero the accumulators.
template <int BMAX, int NR>
__device__ __forceinline__ void reduce_store(float (&acc)[NR][BMAX], float* __restrict__ y, int row0, int rows,
                                             int batch, int lane) {
#pragma unroll
    for (int r = 0; r < NR; ++r) {
#pragma unroll
        for (int b = 0; b < BMAX; ++b) {
            const float v = warp_sum(acc[r][b]);
            if (lane == 0 && b < batch && row0 + r < rows) y[static_cast<size_t>(b) * rows + row0 + r] = v;
            acc[r][b] = 0.0f;
        }
    }
}

// The weights of one step of a warp's walk into registers: chunks lane + 32 (s U + u), u < U, of the NR rows of
// row group g (rows past the end repeat the last row; their sums are never stored). Shared by the float and
// int8-activation kernels.
template <class F, int U, int NR>
__device__ __forceinline__ void load_weight_step(typename F::Raw (&raw)[U][NR], const Planes& w, int g, int s,
                                                 int lane, int rows, int nch) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const int c = lane + 32 * (s * U + u);
        if (c < nch) {
#pragma unroll
            for (int r = 0; r < NR; ++r) F::load(raw[u][r], w, min(g * NR + r, rows - 1), c, nch);
        }
    }
}

// The prefetched step becomes the current one.
template <class F, int U, int NR>
__device__ __forceinline__ void advance_step(typename F::Raw (&cur)[U][NR], const typename F::Raw (&nxt)[U][NR]) {
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
        for (int r = 0; r < NR; ++r) cur[u][r] = nxt[u][r];
}

template <int NR, int BMAX>
__device__ __forceinline__ void zero_accumulators(float (&acc)[NR][BMAX]) {
#pragma unroll
    for (int r = 0; r < NR; ++r)
#pragma unroll
        for (int b = 0; b < BMAX; ++b) acc[r][b] = 0.0f;
}

// Persistent warps: warp w of W takes row groups w, w + W, ... (NR rows each). A row group is `steps` steps;
// step s covers chunks lane + 32 (s U + u), u < U. The loads of the next step (which may belong to the next
// row group) are issued before the current step is computed, so every warp keeps one step of weights in flight
// while it does arithmetic: no load/compute convoys.
template <class F, int ACT, int BMAX, int NR, bool FACT = false>
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
    float acc[NR][BMAX];
    zero_accumulators(acc);

    int g = warp0, s = 0;
    load_weight_step<F, U, NR>(cur, w, g, s, lane, rows, nch);
    for (long long it = 0; it < total; ++it) {
        int gn = g, sn = s + 1;
        if (sn == steps) {
            sn = 0;
            gn += nwarps;
        }
        if (it + 1 < total) load_weight_step<F, U, NR>(nxt, w, gn, sn, lane, rows, nch);

#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int c = lane + 32 * (s * U + u);
            if (c < nch) compute_chunk<F, ACT, BMAX, NR, FACT>(cur[u], c, x, cols, batch, acc);
        }
        if (s == steps - 1) reduce_store<BMAX, NR>(acc, y, g * NR, rows, batch, lane);
        advance_step<F, U, NR>(cur, nxt);
        g = gn;
        s = sn;
    }
}


constexpr int kStages = 4;

// The same walk as gemv_kernel (one chunk per lane per step), weights staged through a cp.async ring.
template <class F, int ACT, int BMAX, int NR>
__global__ void __launch_bounds__(32 * kGemvWarps)
    gemv_async_kernel(Planes w, const uint16_t* __restrict__ x, float* __restrict__ y, int rows, int cols,
                      int batch) {
    extern __shared__ __align__(16) uint8_t smem[];
    const int lane = threadIdx.x & 31;
    const int nch = cols >> 5;
    const int steps = (nch + 31) / 32;
    const int groups = (rows + NR - 1) / NR;
    const int warp0 = blockIdx.x * kGemvWarps + (threadIdx.x >> 5);
    const int nwarps = gridDim.x * kGemvWarps;
    if (warp0 >= groups) return;
    const long long total = static_cast<long long>((groups - 1 - warp0) / nwarps + 1) * steps;
    uint8_t* ring = smem + static_cast<size_t>(threadIdx.x >> 5) * kStages * NR * F::kSlot;

    auto issue = [&](long long k) {  // step k of this warp into stage k % kStages; always one commit group
        if (k < total) {
            const int g = warp0 + static_cast<int>(k / steps) * nwarps;
            const int c = lane + 32 * static_cast<int>(k % steps);
            if (c < nch) {
                uint8_t* st = ring + static_cast<int>(k % kStages) * NR * F::kSlot;
#pragma unroll
                for (int r = 0; r < NR; ++r) F::issue(st + r * F::kSlot, lane, w, min(g * NR + r, rows - 1), c, nch);
            }
        }
        cp_async_commit();
    };

    float acc[NR][BMAX];
    zero_accumulators(acc);

#pragma unroll
    for (int k = 0; k < kStages - 1; ++k) issue(k);
    int g = warp0, s = 0;
    for (long long it = 0; it < total; ++it) {
        issue(it + kStages - 1);
        cp_async_wait<kStages - 1>();  // this lane's copies of step `it` have landed
        const int c = lane + 32 * s;
        if (c < nch) {
            const uint8_t* st = ring + static_cast<int>(it % kStages) * NR * F::kSlot;
            typename F::Raw raw[NR];
#pragma unroll
            for (int r = 0; r < NR; ++r) F::fetch(raw[r], st + r * F::kSlot, lane, min(g * NR + r, rows - 1), c, nch);
            compute_chunk<F, ACT, BMAX, NR>(raw, c, x, cols, batch, acc);
        }
        if (s == steps - 1) reduce_store<BMAX, NR>(acc, y, g * NR, rows, batch, lane);
        if (++s == steps) {
            s = 0;
            g += nwarps;
        }
    }
    cp_async_wait<0>();
}

template <class F, int ACT, int BMAX, int NR>
cudaError_t launch_gemv_t(Planes w, const void* x, float* y, int rows, int cols, int batch, int mode,
                          cudaStream_t s) {
    // resident blocks per SM of each instantiation (the same on every Hopper card), found once
    static int per_sm_regs = 0, per_sm_async = 0;
    const int groups = (rows + NR - 1) / NR;
    const int needed = (groups + kGemvWarps - 1) / kGemvWarps;
    const int threads = 32 * kGemvWarps;
    if (mode == 2) {
        const int smem = kGemvWarps * kStages * NR * F::kSlot;
        if (per_sm_async == 0) {
            cudaError_t e = cudaFuncSetAttribute(gemv_async_kernel<F, ACT, BMAX, NR>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
            if (e != cudaSuccess) return e;
            int n = 0;
            e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_async_kernel<F, ACT, BMAX, NR>, threads, smem);
            if (e != cudaSuccess) return e;
            per_sm_async = n > 0 ? n : 1;
        }
        const int resident = per_sm_async * sm_count();
        gemv_async_kernel<F, ACT, BMAX, NR><<<needed < resident ? needed : resident, threads, smem, s>>>(
            w, static_cast<const uint16_t*>(x), y, rows, cols, batch);
        return cudaGetLastError();
    }
    if constexpr (BMAX == 1 && F::kFactored) {
        if (mode == 3) {
            static int per_sm_fact = 0;
            if (per_sm_fact == 0) {
                int n = 0;
                cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                    &n, gemv_kernel<F, ACT, BMAX, NR, true>, threads, 0);
                if (e != cudaSuccess) return e;
                per_sm_fact = n > 0 ? n : 1;
            }
            const int resident = per_sm_fact * sm_count();
            gemv_kernel<F, ACT, BMAX, NR, true><<<needed < resident ? needed : resident, threads, 0, s>>>(
                w, static_cast<const uint16_t*>(x), y, rows, cols, batch);
            return cudaGetLastError();
        }
    }
    if (per_sm_regs == 0) {
        int n = 0;
        cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_kernel<F, ACT, BMAX, NR>, threads, 0);
        if (e != cudaSuccess) return e;
        per_sm_regs = n > 0 ? n : 1;
    }
    const int resident = per_sm_regs * sm_count();
    gemv_kernel<F, ACT, BMAX, NR><<<needed < resident ? needed : resident, threads, 0, s>>>(
        w, static_cast<const uint16_t*>(x), y, rows, cols, batch);
    return cudaGetLastError();
}

template <class F, int ACT>
cudaError_t launch_gemv_b(Planes w, const void* x, float* y, int rows, int cols, int batch, int nr, int mode,
                          cudaStream_t s) {
    return with_bmax(batch, [&](auto bmax) {
        return with_nr(nr, [&](auto n) {
            return launch_gemv_t<F, ACT, decltype(bmax)::value, decltype(n)::value>(w, x, y, rows, cols, batch, mode, s);
        });
    });
}

// ---------------------------------------------------------------------------------------------------------
// Int8 activations (modes 4, 5).

// The workspace: xq int8 [batch][cols], then xd float32 [batch][cols / 32].
inline size_t q8_workspace_bytes(int batch, int cols) {
    return static_cast<size_t>(batch) * cols + static_cast<size_t>(batch) * (cols / 32) * 4;
}

// x (n8 groups of 8 consecutive values; 4 groups = one 32-block, never across rows since cols % 32 == 0) ->
// xq, xd. Four lanes per block: max|x| by two shuffles. A block holding NaN gets d = NaN; Inf gives d = Inf,
// q = 0, so its products are NaN too. Rounding as the tests' float32 reference: p = x * (127 / max) rounded,
// then round-half-even to an integer by adding 1.5 * 2^23 (whose low byte is then q mod 256).
template <int ACT>
__global__ void __launch_bounds__(256) quant_x_kernel(const void* __restrict__ x, int8_t* __restrict__ xq,
                                                      float* __restrict__ xd, int n8) {
    griddep_launch_dependents();
    griddep_wait();  // x may be the previous kernel's output (launched with PDL in modes 12-15; else a no-op)
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int ic = i < n8 ? i : n8 - 1;  // every lane takes part in the shuffles
    float f[8];
    if constexpr (ACT == ACT_F32) {  // 32 aligned bytes of float32
        const float4* p = reinterpret_cast<const float4*>(static_cast<const float*>(x) + static_cast<size_t>(ic) * 8);
        const float4 a = p[0], b = p[1];
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    } else {
        load_x8<ACT>(static_cast<const uint16_t*>(x) + static_cast<size_t>(ic) * 8, f);
    }
    uint32_t lo, hi;
    const float d = round8_q8(f, lo, hi);
    if (i < n8) {
        *reinterpret_cast<uint2*>(xq + static_cast<size_t>(i) * 8) = make_uint2(lo, hi);
        if ((i & 3) == 0) xd[i >> 2] = d;
    }
}

// One chunk c (32 weights) of NR rows into acc with int8 activations: per piece two dp4a per row and batch row; per
// group of kQ8Group pieces one float combination dx * (A * dot - C * sum(xq)) (the sum is shared by the NR rows).
template <class F, int BMAX, int NR>
__device__ __forceinline__ void compute_chunk_q8(const typename F::Raw (&raw)[NR], int c, const int8_t* __restrict__ xq,
                                                 const float* __restrict__ xd, int cols, int batch,
                                                 float (&acc)[NR][BMAX]) {
    constexpr int NP = 4, G = F::kQ8Group, NG = NP / G;
    typename F::Prep8 pre[NR];
    uint32_t wv[NR][NP][2];
#pragma unroll
    for (int r = 0; r < NR; ++r) {
        F::prep8(pre[r], raw[r]);
#pragma unroll
        for (int P = 0; P < NP; ++P) F::q8_piece(raw[r], P, wv[r][P][0], wv[r][P][1]);
    }
#pragma unroll
    for (int b = 0; b < BMAX; ++b) {
        if (b < batch) {
            const int8_t* xb = xq + static_cast<size_t>(b) * cols;
            const float* db = xd + static_cast<size_t>(b) * (cols >> 5);
            uint2 xv[NP];
#pragma unroll
            for (int P = 0; P < NP; ++P) xv[P] = ld_x8(xb + F::col(c, P));
#pragma unroll
            for (int g = 0; g < NG; ++g) {
                const float dx = __ldg(db + (F::col(c, g * G) >> 5));
                float sx = 0.0f;
                if (F::kQ8Sum) {
                    int s = 0;
#pragma unroll
                    for (int p = 0; p < G; ++p)
                        s = dp4a<true>(xv[g * G + p].x, 0x01010101u, dp4a<true>(xv[g * G + p].y, 0x01010101u, s));
                    sx = static_cast<float>(s);
                }
#pragma unroll
                for (int r = 0; r < NR; ++r) {
                    int lo = 0, hi = 0;
#pragma unroll
                    for (int p = 0; p < G; ++p) {
                        const int P = g * G + p;
                        if (F::q8_hi(P)) {
                            hi = dp4a<F::kQ8Signed>(wv[r][P][0], xv[P].x, dp4a<F::kQ8Signed>(wv[r][P][1], xv[P].y, hi));
                        } else {
                            lo = dp4a<F::kQ8Signed>(wv[r][P][0], xv[P].x, dp4a<F::kQ8Signed>(wv[r][P][1], xv[P].y, lo));
                        }
                    }
                    const int dot = lo + (hi >> 4);  // hi holds 16 x the high nibbles' products, exactly
                    float t = F::q8_a(pre[r], g) * static_cast<float>(dot);
                    if (F::kQ8Sum) t = fmaf(-F::q8_c(pre[r], g), sx, t);
                    acc[r][b] = fmaf(dx, t, acc[r][b]);
                }
            }
        }
    }
}

// The walk of gemv_kernel (persistent warps, next step prefetched) on int8 activations. The first step's
// weights are requested before waiting for the rounding kernel (PDL overlaps the two grids).
// DEPTH: row-chunks per lane in flight (U = DEPTH / NR chunks per step). KS: warps sharing one row group
// (1: each warp owns its row groups; 4: the block's 4 warps split the group's steps, warp k taking steps k,
// k + 4, ..., and add their sums through shared memory: 4x the warps for matrices of few rows). MINB: blocks per
// SM asked of the register allocator (1: no cap; 8: at most 64 registers, 2x the resident warps). CHAIN: the
// successor may start at once (modes 12-15).
template <class F, int BMAX, int NR, int DEPTH, int KS, int MINB, bool CHAIN = false>
__global__ void __launch_bounds__(32 * kGemvWarps, MINB)
    gemv_q8_kernel(Planes w, const int8_t* __restrict__ xq, const float* __restrict__ xd, float* __restrict__ y,
                   int rows, int cols, int batch) {
    static_assert(KS == 1 || KS == kGemvWarps, "KS: 1 or the block's warps");
    constexpr int U = NR >= DEPTH ? 1 : DEPTH / NR;
    __shared__ float red[KS == 1 ? 1 : 2][KS][NR][BMAX];
    const int lane = threadIdx.x & 31;
    const int wid = threadIdx.x >> 5;
    const int nch = cols >> 5;
    const int steps = (nch + 32 * U - 1) / (32 * U);
    const int lsteps = (steps + KS - 1) / KS;  // this warp's steps per row group
    const int groups = (rows + NR - 1) / NR;
    const int warp0 = KS == 1 ? blockIdx.x * kGemvWarps + wid : blockIdx.x;  // first row group
    const int nwarps = KS == 1 ? gridDim.x * kGemvWarps : gridDim.x;         // row-group stride
    if (warp0 >= groups) {  // block-uniform when KS > 1
        if (CHAIN) griddep_launch_dependents();
        griddep_wait();
        return;
    }
    const long long total = static_cast<long long>((groups - 1 - warp0) / nwarps + 1) * lsteps;

    typename F::Raw cur[U][NR], nxt[U][NR];
    auto load_step = [&](typename F::Raw(&raw)[U][NR], int g, int ls) {  // ls: this warp's step in the group
        load_weight_step<F, U, NR>(raw, w, g, ls * KS + (KS == 1 ? 0 : wid), lane, rows, nch);
    };

    float acc[NR][BMAX];
    zero_accumulators(acc);

    int g = warp0, ls = 0, parity = 0;
    load_step(cur, g, ls);
    if (CHAIN) griddep_launch_dependents();  // the next call's prologue may start during this one's tail
    griddep_wait();
    for (long long it = 0; it < total; ++it) {
        int gn = g, lsn = ls + 1;
        if (lsn == lsteps) {
            lsn = 0;
            gn += nwarps;
        }
        if (it + 1 < total) load_step(nxt, gn, lsn);

        const int s = ls * KS + (KS == 1 ? 0 : wid);
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int c = lane + 32 * (s * U + u);
            if (c < nch) compute_chunk_q8<F, BMAX, NR>(cur[u], c, xq, xd, cols, batch, acc);
        }
        if (ls == lsteps - 1) {
            if constexpr (KS == 1) {
                reduce_store<BMAX, NR>(acc, y, g * NR, rows, batch, lane);
            } else {
                // warp sums into red[parity][wid], one barrier, warp 0 adds the KS partial sums and stores; the
                // other buffer takes the next group, so no second barrier is needed
#pragma unroll
                for (int r = 0; r < NR; ++r) {
#pragma unroll
                    for (int b = 0; b < BMAX; ++b) {
                        const float v = warp_sum(acc[r][b]);
                        if (lane == 0) red[parity][wid][r][b] = v;
                        acc[r][b] = 0.0f;
                    }
                }
                __syncthreads();
                if (wid == 0) {
                    for (int i = lane; i < NR * BMAX; i += 32) {
                        const int r = i / BMAX, b = i % BMAX;
                        float v = 0.0f;
#pragma unroll
                        for (int k = 0; k < KS; ++k) v += red[parity][k][r][b];
                        if (b < batch && g * NR + r < rows) y[static_cast<size_t>(b) * rows + g * NR + r] = v;
                    }
                }
                parity ^= 1;
            }
        }
        advance_step<F, U, NR>(cur, nxt);
        g = gn;
        ls = lsn;
    }
}

template <class F, int BMAX, int NR, int DEPTH, int KS, int MINB, bool CHAIN = false>
cudaError_t launch_gemv_q8_t(Planes w, const void* x, int act, float* y, int rows, int cols, int batch, bool pdl,
                             void* ws, cudaStream_t s) {
    int8_t* xq = static_cast<int8_t*>(ws);
    float* xd = reinterpret_cast<float*>(static_cast<uint8_t*>(ws) + static_cast<size_t>(batch) * cols);
    const int n8 = batch * (cols / 8);
    const unsigned qblocks = static_cast<unsigned>((n8 + 255) / 256);
    auto quant = act == ACT_BF16 ? quant_x_kernel<ACT_BF16> : act == ACT_F32 ? quant_x_kernel<ACT_F32>
                                                                               : quant_x_kernel<ACT_F16>;
    cudaError_t e = cudaSuccess;
    if (act != ACT_PRE) {  // ACT_PRE: the workspace already holds the rounded x
        if (CHAIN) {       // may start during the previous kernel (it waits before reading x)
            e = launch_pdl(quant, dim3(qblocks), dim3(256), 0, s, x, xq, xd, n8);
        } else {
            quant<<<qblocks, 256, 0, s>>>(x, xq, xd, n8);
            e = cudaGetLastError();
        }
    }
    if (e != cudaSuccess) return e;

    auto kernel = gemv_q8_kernel<F, BMAX, NR, DEPTH, KS, MINB, CHAIN>;
    static int per_sm = 0;
    const int threads = 32 * kGemvWarps;
    if (per_sm == 0) {
        int n = 0;
        e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, 0);
        if (e != cudaSuccess) return e;
        per_sm = n > 0 ? n : 1;
    }
    const int groups = (rows + NR - 1) / NR;
    const int needed = KS == 1 ? (groups + kGemvWarps - 1) / kGemvWarps : groups;
    const int resident = per_sm * sm_count();
    const unsigned grid = static_cast<unsigned>(needed < resident ? needed : resident);
    const int8_t* cxq = xq;
    const float* cxd = xd;
    if (pdl) return launch_pdl(kernel, dim3(grid), dim3(threads), 0, s, w, cxq, cxd, y, rows, cols, batch);
    kernel<<<grid, threads, 0, s>>>(w, cxq, cxd, y, rows, cols, batch);
    return cudaGetLastError();
}

// mode -> (DEPTH, KS, MINB, CHAIN): 4, 5: (4, 1, 1); 6: (8, 1, 1); 7: (4, 4, 1); 8: (4, 1, 8); 9: (4, 4, 8);
// 12: (4, 1, 1, chain); 13: (8, 1, 1, chain); 14: (4, 4, 1, chain); 15: (8, 4, 1, chain); batch 1 only:
// 16: (4, 1, 5, chain); 17: (4, 4, 5, chain); 18: (4, 1, 4, chain); 19: (4, 4, 4, chain)
template <class F, int BMAX, int NR>
cudaError_t launch_gemv_q8_mode(Planes w, const void* x, int act, float* y, int rows, int cols, int batch, int mode,
                                void* ws, cudaStream_t s) {
    const bool pdl = mode >= 5;
    switch (mode) {
        case 6: return launch_gemv_q8_t<F, BMAX, NR, 8, 1, 1>(w, x, act, y, rows, cols, batch, pdl, ws, s);
        case 7: return launch_gemv_q8_t<F, BMAX, NR, 4, kGemvWarps, 1>(w, x, act, y, rows, cols, batch, pdl, ws, s);
        case 8: return launch_gemv_q8_t<F, BMAX, NR, 4, 1, 8>(w, x, act, y, rows, cols, batch, pdl, ws, s);
        case 9: return launch_gemv_q8_t<F, BMAX, NR, 4, kGemvWarps, 8>(w, x, act, y, rows, cols, batch, pdl, ws, s);
        case 12: return launch_gemv_q8_t<F, BMAX, NR, 4, 1, 1, true>(w, x, act, y, rows, cols, batch, true, ws, s);
        case 13: return launch_gemv_q8_t<F, BMAX, NR, 8, 1, 1, true>(w, x, act, y, rows, cols, batch, true, ws, s);
        case 14:
            return launch_gemv_q8_t<F, BMAX, NR, 4, kGemvWarps, 1, true>(w, x, act, y, rows, cols, batch, true, ws, s);
        case 15:
            return launch_gemv_q8_t<F, BMAX, NR, 8, kGemvWarps, 1, true>(w, x, act, y, rows, cols, batch, true, ws, s);
        default: return launch_gemv_q8_t<F, BMAX, NR, 4, 1, 1>(w, x, act, y, rows, cols, batch, pdl, ws, s);
    }
}

// Modes 16-19 (batch 1), instantiated for batch 1 only.
template <class F, int NR>
cudaError_t launch_gemv_b1_nr(Planes w, const void* x, int act, float* y, int rows, int cols, int mode, void* ws,
                                cudaStream_t s) {
    switch (mode) {
        case 16: return launch_gemv_q8_t<F, 1, NR, 4, 1, 5, true>(w, x, act, y, rows, cols, 1, true, ws, s);
        case 17:
            return launch_gemv_q8_t<F, 1, NR, 4, kGemvWarps, 5, true>(w, x, act, y, rows, cols, 1, true, ws, s);
        case 18: return launch_gemv_q8_t<F, 1, NR, 4, 1, 4, true>(w, x, act, y, rows, cols, 1, true, ws, s);
        default: return launch_gemv_q8_t<F, 1, NR, 4, kGemvWarps, 4, true>(w, x, act, y, rows, cols, 1, true, ws, s);
    }
}

template <class F>
cudaError_t launch_gemv_b1(Planes w, const void* x, int act, float* y, int rows, int cols, int nr, int mode,
                             void* ws, cudaStream_t s) {
    return with_nr(nr, [&](auto n) {
        return launch_gemv_b1_nr<F, decltype(n)::value>(w, x, act, y, rows, cols, mode, ws, s);
    });
}

template <class F>
cudaError_t launch_gemv_q8(Planes w, const void* x, int act, float* y, int rows, int cols, int batch, int nr,
                           int mode, void* ws, cudaStream_t s) {
    return with_bmax(batch, [&](auto bmax) {
        return with_nr(nr, [&](auto n) {
            return launch_gemv_q8_mode<F, decltype(bmax)::value, decltype(n)::value>(w, x, act, y, rows, cols, batch,
                                                                                     mode, ws, s);
        });
    });
}

// The entry each format's .cu instantiates. nr <= 0 picks the default rows-per-warp, mode <= 0 the default
// variant: with a workspace (ws, ws_bytes >= q8_workspace_bytes) the int8-activation path, else the float one.
template <class F>
cudaError_t launch_gemv(Planes w, const void* x, int act, float* y, int rows, int cols, int batch, int nr, int mode,
                        void* ws, long long ws_bytes, cudaStream_t s) {
    if (batch < 1 || batch > 16 || rows < 1 || cols < 32 || cols % 32 || mode > 19) return cudaErrorInvalidValue;
    if (act != ACT_BF16 && act != ACT_F16 && act != ACT_F32 && act != ACT_PRE) return cudaErrorInvalidValue;
    const bool have_ws = ws != nullptr && reinterpret_cast<uintptr_t>(ws) % 16 == 0 &&
                         ws_bytes >= static_cast<long long>(q8_workspace_bytes(batch, cols));
    if (mode <= 0 && have_ws) {
        // as ops.py's BATCH1_RULES and BATCH1_DEFAULT (BENCHMARKS.md, 2026-11-27/28): at batch 1 the chained
        // kernels, Q4_0 and Q8_0 with the block's warps splitting each row group's columns, Q4_K and Q6_K not, except
        // on wide matrices (Q4_K split, Q6_K split at <= 128 registers) and square ones (Q6_K split, Q4_K split up to
        // 2048 rows); above batch 1 split (mode 7). The stream kernel (modes 10 / 11) wins only back to back on the
        // smaller matrices and loses ~3 us a call in the GPU runner.
        const bool wide = cols > rows, square = cols == rows;
        mode = batch > 1 ? 7
             : (F::kType == 14 && wide) ? 19
             : (F::kType == 2 || F::kType == 8 || (F::kType == 14 && square) ||
                (F::kType == 12 && (wide || (square && rows <= 2048)))) ? 14 : 12;
        if (nr <= 0) nr = 4;
    }
    if (mode == 10 || mode == 11) {
        if (!have_ws) return cudaErrorInvalidValue;
        if (batch == 1) {
            const cudaError_t e =
                launch_gemv_stream<F>(w, x, act, y, rows, cols, nr > 0 ? nr : stream_default_nr<F>(), mode, s);
            if (e != cudaErrorNotSupported) return e;
            mode = F::kType == 2 ? 6 : 5;  // ring or x too large for shared memory: the register kernel
            nr = 4;
        } else {
            mode = 7;  // the stream kernel is batch 1 only
        }
    }
    if (mode >= 4) {
        if (!have_ws) return cudaErrorInvalidValue;
        if (nr <= 0) nr = 4;
        if (mode >= 16 && batch > 1) mode = 7;  // modes 16-19 are batch 1 only
        if (mode >= 16) return launch_gemv_b1<F>(w, x, act, y, rows, cols, nr, mode, ws, s);
        return launch_gemv_q8<F>(w, x, act, y, rows, cols, batch, nr, mode, ws, s);
    }
    if (act == ACT_F32 || act == ACT_PRE) return cudaErrorInvalidValue;  // the int8-activation modes only
    // defaults from the H200 run of 2026-11-27 (BENCHMARKS.md): at batch 1 the factored arithmetic, 2 rows per
    // warp for Q4_0 and 4 otherwise; above batch 1 register prefetch with 4 rows per warp
    if (nr <= 0) nr = (batch == 1 && F::kType == 2) ? 2 : 4;
    if (mode <= 0) mode = batch == 1 ? 3 : 1;
    if (act == ACT_BF16) return launch_gemv_b<F, ACT_BF16>(w, x, y, rows, cols, batch, nr, mode, s);
    return launch_gemv_b<F, ACT_F16>(w, x, y, rows, cols, batch, nr, mode, s);
}

}  // namespace awq
