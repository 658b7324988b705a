// The stream GEMV (modes 10, 11): batch 1, int8 activations, one kernel per product, weights streamed through
// shared-memory rings by the copy engine.
//
// Each block (W warps; one block per SM, persistent) owns a contiguous range of rows, dealt to its warps in groups
// of NR rows (warp w takes groups w, w + W, ...). Each warp streams its own rows through its own ring of `stages`
// slots: a stage is its NR rows x 32 U chunks (32 weights each) of every plane of the format, one bulk copy
// (cp.async.bulk) per row and plane completing on the slot's mbarrier, issued by the warp's lanes; no block barrier
// in the loop, so the warps' copy issue, waits and arithmetic overlap. Together ~100 KB per block are in flight
// without a register per byte: the register kernels of gemv.cuh hold one step of weights per warp in registers and
// reach 0.35-0.84 of the copy bandwidth. (A first version shared one ring per block, filled by warp 0 and released
// by a block barrier per stage: copy instructions issue one lane at a time, ~70 cycles each, so one warp issuing
// 16-24 per stage for the whole block serialized the stages, 0.7-1.3 us each.) Measured (H200, BENCHMARKS.md): faster
// than the register kernels back to back on 4096x4096 and a few larger shapes, slower on most large ones (~1 stage
// per warp per us), and ~4 us more per call when not overlapped with the previous one: opt-in, not the default.
//
// Order of a block: barriers initialized, each warp issues its first `stages` stages (weights do not depend on
// earlier kernels), griddepcontrol.launch_dependents (a next GEMV launched with PDL starts its own copies meanwhile),
// griddepcontrol.wait (the previous kernel has finished writing x), x rounded to int8 per 32 into shared memory
// by the block itself (round8_q8, with the per-group sums of q the format's dot needs: no separate rounding kernel;
// with act = ACT_PRE the fused kernel's rounded x is copied in), one block barrier, then each warp's ring: wait for
// the slot, dot its rows' chunks lane + 32 u with x (dp4a, the format's q8 arithmetic of gemv.cuh), __syncwarp,
// refill the slot with the stage `stages` ahead. A row group's sums are warp-reduced after its last stage.
//
// Plane chunks are copied 16-byte aligned: planes whose entries are not a multiple of 16 bytes (the 2-byte scales)
// are copied from the 16-byte boundary below to the one above, so every plane allocation is padded to a multiple of
// 16 bytes (ops.py); the consumer skips the leading bytes.
#pragma once

#include "common.cuh"

namespace awq {

constexpr int kStreamSmem = 110 * 1024;  // rings + x per block: two blocks fit an SM (a PDL successor's too)
constexpr int kStreamMaxStages = 8;
constexpr int kStreamMaxWarps = 16;

// 8 x the bytes of one chunk (32 weights) over the format's planes.
template <class F>
__host__ __device__ constexpr int stream_chunk_bytes_x8() {
    int b = 0;
    for (int p = 0; p < F::kPlanes; ++p) b += 8 * F::plane_bytes(p) / F::plane_unit(p);
    return b;
}

template <class F, int NR, int W>
struct StreamGeom {
    // chunks per row per stage: 32 U, U (1..4) sized so that a warp's stage is ~21 KB / W (32 U is a multiple of 8:
    // whole super-blocks)
    static constexpr int kU0 = 21504 / W * 8 / (NR * 32 * stream_chunk_bytes_x8<F>());
    static constexpr int kU = kU0 >= 4 ? 4 : kU0 >= 2 ? 2 : 1;  // a power of 2: 4096 columns are whole stages
    static constexpr int kChunks = 32 * kU;
    // bytes of plane p per row in a slot: the tile's entries, plus alignment slack where entries are not 16-byte
    static constexpr __host__ __device__ int cap(int p) {
        return p >= F::kPlanes ? 0
               : F::plane_bytes(p) % 16 == 0
                   ? kChunks / F::plane_unit(p) * F::plane_bytes(p)
                   : (kChunks / F::plane_unit(p) * F::plane_bytes(p) + 30 + 15) / 16 * 16;
    }
    static constexpr __host__ __device__ int off(int p) { return p == 0 ? 0 : p == 1 ? cap(0) : cap(0) + cap(1); }
    static constexpr int kRowBytes = cap(0) + cap(1) + cap(2);
    static constexpr int kStageBytes = NR * kRowBytes;  // one warp's stage
};

// Shared memory before the rings: the barriers (kStreamMaxWarps x kStreamMaxStages x 8 bytes), then x in the order
// the lanes read it (lane l takes chunk c0 + l, so chunk-consecutive entries are conflict-free): X[P][c] the 8 int8
// of chunk c's piece P, D[g][c] and S[g][c] the d and the sum of q of chunk c's group g of kQ8Group pieces (S only for
// formats with kQ8Sum); then the rounded x in column order (xq int8 [cols], xd float [cols / 32]) it is gathered
// from. The rings start 128-byte aligned. (x in column order, read in place, made 4-8-way bank conflicts, the lanes'
// 32-byte chunks being 32 bytes apart; gathering it took 14336x4096 Q6_K from 27.5 to 22.7 us, Q4_0 13.4 to 12.9.)
constexpr int kStreamBarBytes = kStreamMaxWarps * kStreamMaxStages * 8;
template <class F>
struct StreamXLayout {
    static constexpr int kGroups = 4 / F::kQ8Group;
    int nch;
    __host__ __device__ explicit StreamXLayout(int cols) : nch(cols >> 5) {}
    __host__ __device__ int x_off() const { return kStreamBarBytes; }
    __host__ __device__ int d_off() const { return x_off() + nch * 32; }
    __host__ __device__ int s_off() const { return d_off() + kGroups * nch * 4; }
    __host__ __device__ int nat_off() const { return (s_off() + (F::kQ8Sum ? kGroups * nch * 4 : 0) + 15) / 16 * 16; }
    __host__ __device__ int natd_off() const { return nat_off() + nch * 32; }
    __host__ __device__ int ring_off() const { return (natd_off() + nch * 4 + 127) / 128 * 128; }
};

template <class F>
__host__ __device__ inline int stream_ring_offset(int cols) {
    return StreamXLayout<F>(cols).ring_off();
}

// x -> int8 in shared memory (all threads of the block). ACT_PRE: x is the workspace a fused kernel rounded into.
__device__ __forceinline__ void stream_round_x(const void* __restrict__ x, int act, int cols, int8_t* xq, float* xd) {
    const int n8 = cols >> 3;  // a multiple of 4: a lane quad is one 32-block, wholly in or out of range
    for (int base = 0; base < n8; base += blockDim.x) {
        const int i = base + threadIdx.x;
        const bool active = i < n8;
        const int ic = active ? i : n8 - 1;
        uint32_t lo, hi;
        float d;
        if (act == ACT_PRE) {
            const int8_t* wq = static_cast<const int8_t*>(x);
            const uint2 v = __ldg(reinterpret_cast<const uint2*>(wq + static_cast<size_t>(ic) * 8));
            lo = v.x;
            hi = v.y;
            d = __ldg(reinterpret_cast<const float*>(wq + cols) + (ic >> 2));
        } else {
            float f[8];
            if (act == ACT_F32) {
                const float4* p = reinterpret_cast<const float4*>(static_cast<const float*>(x) + static_cast<size_t>(ic) * 8);
                const float4 a = __ldg(p), b = __ldg(p + 1);
                f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
            } else if (act == ACT_BF16) {
                load_x8<ACT_BF16>(static_cast<const uint16_t*>(x) + static_cast<size_t>(ic) * 8, f);
            } else {
                load_x8<ACT_F16>(static_cast<const uint16_t*>(x) + static_cast<size_t>(ic) * 8, f);
            }
            d = round8_q8(f, lo, hi);
        }
        if (active) {
            *reinterpret_cast<uint2*>(xq + i * 8) = make_uint2(lo, hi);
            if ((i & 3) == 0) xd[i >> 2] = d;
        }
    }
}

// The rounded x (column order, xq / xd) -> X, D, S in the lanes' order (StreamXLayout); all threads of the block.
template <class F>
__device__ __forceinline__ void stream_permute_x(const int8_t* xq, const float* xd, int nch, uint2* X, float* D, int* S) {
    constexpr int G = F::kQ8Group, NG = 4 / G;
    for (int i = threadIdx.x; i < nch * 4; i += blockDim.x) {
        const int c = i >> 2, P = i & 3;
        X[P * nch + c] = *reinterpret_cast<const uint2*>(xq + F::col(c, P));
    }
    for (int i = threadIdx.x; i < nch * NG; i += blockDim.x) {
        const int c = i / NG, g = i - c * NG;
        D[g * nch + c] = xd[F::col(c, g * G) >> 5];
        if constexpr (F::kQ8Sum) {
            int sum = 0;
#pragma unroll
            for (int p = 0; p < G; ++p) {
                const uint2 v = *reinterpret_cast<const uint2*>(xq + F::col(c, g * G + p));
                sum = dp4a<true>(v.x, 0x01010101u, dp4a<true>(v.y, 0x01010101u, sum));
            }
            S[g * nch + c] = sum;
        }
    }
}

// Chunk c's int8 x (from shared memory): its 4 pieces, and per group of kQ8Group pieces d and the sum of q.
template <class F>
struct StreamX {
    static constexpr int kGroups = 4 / F::kQ8Group;
    uint2 v[4];
    float d[kGroups];
    int s[kGroups];

    __device__ __forceinline__ void load(const uint2* X, const float* D, const int* S, int nch, int c) {
#pragma unroll
        for (int P = 0; P < 4; ++P) v[P] = X[P * nch + c];
#pragma unroll
        for (int g = 0; g < kGroups; ++g) {
            d[g] = D[g * nch + c];
            if constexpr (F::kQ8Sum) s[g] = S[g * nch + c];
        }
    }
};

// One row's chunk (raw weights) times its x: sum over groups of dx * (A * dot - C * sum(q)), as compute_chunk_q8.
template <class F>
__device__ __forceinline__ float stream_dot(const typename F::Raw& raw, const StreamX<F>& x) {
    constexpr int G = F::kQ8Group;
    typename F::Prep8 pre;
    F::prep8(pre, raw);
    float acc = 0.0f;
#pragma unroll
    for (int g = 0; g < 4 / G; ++g) {
        int lo = 0, hi = 0;
#pragma unroll
        for (int p = 0; p < G; ++p) {
            const int P = g * G + p;
            uint32_t w0, w1;
            F::q8_piece(raw, P, w0, w1);
            if (F::q8_hi(P)) {
                hi = dp4a<F::kQ8Signed>(w0, x.v[P].x, dp4a<F::kQ8Signed>(w1, x.v[P].y, hi));
            } else {
                lo = dp4a<F::kQ8Signed>(w0, x.v[P].x, dp4a<F::kQ8Signed>(w1, x.v[P].y, lo));
            }
        }
        const int dot = lo + (hi >> 4);  // hi holds 16 x the high nibbles' products, exactly
        float t = F::q8_a(pre, g) * static_cast<float>(dot);
        if (F::kQ8Sum) t = fmaf(-F::q8_c(pre, g), static_cast<float>(x.s[g]), t);
        acc = fmaf(x.d[g], t, acc);
    }
    return acc;
}

// Plane p's base pointer.
__device__ __forceinline__ const uint8_t* plane_ptr(const Planes& w, int p) { return p == 0 ? w.p0 : p == 1 ? w.p1 : w.p2; }

// Byte offset of row `row`'s entries of the tile starting at chunk c0 in plane p (planes are row-major).
template <class F>
__device__ __forceinline__ size_t stream_src(int p, int row, int c0, int nch) {
    const size_t stride = static_cast<size_t>(nch / F::plane_unit(p)) * F::plane_bytes(p);
    return static_cast<size_t>(row) * stride + static_cast<size_t>(c0 / F::plane_unit(p)) * F::plane_bytes(p);
}

template <class F, int NR, int W>
__global__ void __launch_bounds__(32 * W, 2)
    gemv_stream_kernel(Planes w, const void* __restrict__ x, int act, float* __restrict__ y, int rows, int cols,
                       int stages) {
    using Gm = StreamGeom<F, NR, W>;
    constexpr int U = Gm::kU;
    extern __shared__ __align__(128) uint8_t stream_smem[];
    const StreamXLayout<F> xl(cols);
    uint2* X = reinterpret_cast<uint2*>(stream_smem + xl.x_off());
    float* D = reinterpret_cast<float*>(stream_smem + xl.d_off());
    int* S = reinterpret_cast<int*>(stream_smem + xl.s_off());
    int8_t* xq = reinterpret_cast<int8_t*>(stream_smem + xl.nat_off());
    float* xd = reinterpret_cast<float*>(stream_smem + xl.natd_off());

    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    uint64_t* full = reinterpret_cast<uint64_t*>(stream_smem) + wid * kStreamMaxStages;
    uint8_t* ring = stream_smem + stream_ring_offset<F>(cols) + static_cast<size_t>(wid) * stages * Gm::kStageBytes;
    const int nch = cols >> 5;
    const int per = rows / gridDim.x, extra = rows % gridDim.x;
    const int r0 = blockIdx.x * per + min(static_cast<int>(blockIdx.x), extra);
    const int r1 = r0 + per + (static_cast<int>(blockIdx.x) < extra ? 1 : 0);
    const int ktiles = (nch + Gm::kChunks - 1) / Gm::kChunks;
    const int groups = (r1 - r0 + NR - 1) / NR;                    // the block's row groups
    const int mine = wid < groups ? (groups - 1 - wid) / W + 1 : 0;  // this warp's: wid, wid + W, ...
    const int total = mine * ktiles;

    // this warp's stage k into slot k % stages: lane 0 announces the bytes, then each lane copies a (row, plane)
    auto produce = [&](int k) {
        const int gi = k / ktiles, kt = k - gi * ktiles;
        const int c0 = kt * Gm::kChunks, nk = min(Gm::kChunks, nch - c0);
        const int rbase = r0 + (wid + gi * W) * NR, nrows = min(NR, r1 - rbase);
        uint8_t* st = ring + (k % stages) * Gm::kStageBytes;
        uint64_t* bar = full + k % stages;
        const bool on = lane < nrows * F::kPlanes;
        const int q = lane / F::kPlanes, p = lane - q * F::kPlanes;
        size_t a0 = 0, a1 = 0;
        if (on) {
            const size_t start = stream_src<F>(p, rbase + q, c0, nch);
            const size_t n = static_cast<size_t>(nk / F::plane_unit(p)) * F::plane_bytes(p);
            a0 = start & ~size_t(15);
            a1 = (start + n + 15) & ~size_t(15);
        }
        const uint32_t bytes = __reduce_add_sync(0xFFFFFFFFu, static_cast<uint32_t>(a1 - a0));
        if (lane == 0) mbar_arrive_expect_tx(bar, bytes);
        __syncwarp();
        if (on) bulk_copy_g2s(st + q * Gm::kRowBytes + Gm::off(p), plane_ptr(w, p) + a0, static_cast<uint32_t>(a1 - a0), bar);
    };

    if (lane == 0) {
        for (int s = 0; s < stages; ++s) mbar_init(full + s, 1);
        mbar_fence_init();
    }
    __syncwarp();
    for (int k = 0; k < min(stages, total); ++k) produce(k);
    griddep_launch_dependents();
    griddep_wait();
    stream_round_x(x, act, cols, xq, xd);
    __syncthreads();
    stream_permute_x<F>(xq, xd, nch, X, D, S);
    __syncthreads();

    float acc[NR];
#pragma unroll
    for (int r = 0; r < NR; ++r) acc[r] = 0.0f;
    int kt = 0, slot = 0, rbase = r0 + wid * NR;
    uint32_t phase = 0;
    for (int it = 0; it < total; ++it) {
        mbar_wait(full + slot, phase);
        const int c0 = kt * Gm::kChunks, nk = min(Gm::kChunks, nch - c0);
        const uint8_t* st = ring + slot * Gm::kStageBytes;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int j = lane + 32 * u;
            if (j < nk) {
                StreamX<F> xv;
                xv.load(X, D, S, nch, c0 + j);
#pragma unroll
                for (int r = 0; r < NR; ++r) {
                    const int row = rbase + r;
                    if (row < r1) {
                        const uint8_t* base = st + r * Gm::kRowBytes;
                        const uint8_t* pp[3];
#pragma unroll
                        for (int p = 0; p < 3; ++p) {
                            int mis = 0;
                            if (p < F::kPlanes && F::plane_bytes(p) % 16 != 0)
                                mis = static_cast<int>(stream_src<F>(p, row, c0, nch) & 15);
                            pp[p] = base + Gm::off(p) + mis;
                        }
                        typename F::Raw raw;
                        F::load_tile(raw, pp[0], pp[1], pp[2], j);
                        acc[r] += stream_dot<F>(raw, xv);
                    }
                }
            }
        }
        __syncwarp();  // every lane is done with this slot
        if (it + stages < total) produce(it + stages);
        if (kt == ktiles - 1) {
#pragma unroll
            for (int r = 0; r < NR; ++r) {
                const float v = warp_sum(acc[r]);
                if (lane == 0 && rbase + r < r1) y[rbase + r] = v;
                acc[r] = 0.0f;
            }
            kt = 0;
            rbase += W * NR;
        } else {
            ++kt;
        }
        if (++slot == stages) {
            slot = 0;
            phase ^= 1u;
        }
    }
}

// Launches the stream kernel; cudaErrorNotSupported where it does not apply (ring or x too large for shared memory,
// planes not 16-byte aligned), so the caller can take the register path.
template <class F, int NR, int W>
cudaError_t launch_gemv_stream_t(Planes w, const void* x, int act, float* y, int rows, int cols, cudaStream_t s) {
    using Gm = StreamGeom<F, NR, W>;
    const uintptr_t align = reinterpret_cast<uintptr_t>(w.p0) | reinterpret_cast<uintptr_t>(w.p1) |
                            reinterpret_cast<uintptr_t>(w.p2);
    if (align % 16) return cudaErrorNotSupported;
    const int ring0 = stream_ring_offset<F>(cols);
    int stages = (kStreamSmem - ring0) / (W * Gm::kStageBytes);
    if (stages > kStreamMaxStages) stages = kStreamMaxStages;
    if (stages < 2) return cudaErrorNotSupported;
    const int smem = ring0 + stages * W * Gm::kStageBytes;
    auto kernel = gemv_stream_kernel<F, NR, W>;
    static bool attr_set[64] = {false};  // per device
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) dev = 0;
    if (!attr_set[dev]) {
        const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kStreamSmem);
        if (e != cudaSuccess) return e;
        attr_set[dev] = true;
    }
    const int groups = (rows + W * NR - 1) / (W * NR);
    const int grid = groups < sm_count() ? groups : sm_count();
    return launch_pdl(kernel, dim3(static_cast<unsigned>(grid)), dim3(32 * W), static_cast<size_t>(smem), s, w, x, act,
                      y, rows, cols, stages);
}

// Rows per warp when modes 10 / 11 are asked for with nr = 0.
template <class F>
__host__ __device__ constexpr int stream_default_nr() {
    return 1;
}

// mode 10: 8 warps a block, 11: 16 warps; nr: rows per warp (1, 2, 4). Columns per stage: StreamGeom.
template <class F>
cudaError_t launch_gemv_stream(Planes w, const void* x, int act, float* y, int rows, int cols, int nr, int mode,
                               cudaStream_t s) {
    const bool wide = mode == 11;
    switch (nr) {
        case 1: return wide ? launch_gemv_stream_t<F, 1, 16>(w, x, act, y, rows, cols, s)
                            : launch_gemv_stream_t<F, 1, 8>(w, x, act, y, rows, cols, s);
        case 2: return wide ? launch_gemv_stream_t<F, 2, 16>(w, x, act, y, rows, cols, s)
                            : launch_gemv_stream_t<F, 2, 8>(w, x, act, y, rows, cols, s);
        case 4: return wide ? launch_gemv_stream_t<F, 4, 16>(w, x, act, y, rows, cols, s)
                            : launch_gemv_stream_t<F, 4, 8>(w, x, act, y, rows, cols, s);
        default: return cudaErrorInvalidValue;
    }
}

}  // namespace awq
