// Fused elementwise kernels of the GPU runner's decode step (runner/gpu_model.py), each replacing a chain of
// torch kernels:
//
//   add_rmsnorm_q8: x += r (the residual add), y = RMSNorm(x) * w, y rounded to int8 per 32 values into the
//                   GEMV's workspace (xq int8 [batch][cols], xd float32 [batch][cols / 32], gemv.cuh's layout),
//                   optionally y as float32 too. One block per activation row.
//   silu_mul_q8:    y = silu(gate) * up rounded the same way (optionally y as float32).
//   rope_kv:        q, k, v (float32 rows of the q,k,v GEMV output) -> + bias, per-head RMSNorm (qwen3), RoPE on
//                   q and k (ggml's NORMAL or NEOX pairs, cos/sin tables), q as float16 [n, n_head, d] for
//                   attention, k and v as float16 written straight into the KV cache at each token's position.
//   attn_decode_q8: one query's attention over keys 0..pos (grouped-query heads), the output rounded to int8 per
//                   32 values for the wo GEMV (replaces SDPA over the masked bucket and the GEMV's rounding).
//
// The int8 rounding is quant_x_kernel's (gemv.cuh): per 32 values d = max|y| / 127, q = round-half-even(y * (127 /
// max|y|)) in float32; a block holding NaN gets d = NaN. The GEMV then runs on the workspace with act = ACT_PRE
// (no rounding kernel of its own). The rounding kernels here trigger programmatic dependent launch at their start,
// so the GEMV (launched with PDL) issues its first weight loads while they run.
#include "api.h"
#include "common.cuh"

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ void launch_dependents() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

__device__ __forceinline__ float warp_sum_f(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* smem32) {
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum_f(v);
    __syncthreads();  // smem32 may still be read by a previous call
    if (lane == 0) smem32[wid] = v;
    __syncthreads();
    float s = 0.0f;
    for (int k = 0; k < nw; ++k) s += smem32[k];
    return s;
}

// 8 values of one 32-block (common.cuh's round8_q8: 4 consecutive lanes per block, every lane of the warp calls
// this) -> 8 int8 at xq8, and d at *xd when `first`. `active`: this lane's group exists.
__device__ __forceinline__ void round8_store(const float (&f)[8], bool active, bool first, int8_t* xq8, float* xd) {
    uint32_t lo, hi;
    const float d = awq::round8_q8(f, lo, hi);
    if (active) {
        *reinterpret_cast<uint2*>(xq8) = make_uint2(lo, hi);
        if (first) *xd = d;
    }
}

__device__ __forceinline__ void load8(const float* p, float (&f)[8]) {
    const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

__device__ __forceinline__ void store8(float* p, const float (&f)[8]) {
    reinterpret_cast<float4*>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
}

// grid: batch blocks of kThreads. x, r, out: [batch][cols] float32 (r, out may be null); w [cols].
__global__ void __launch_bounds__(kThreads) add_rmsnorm_q8_kernel(float* __restrict__ x, const float* __restrict__ r,
                                                                 const float* __restrict__ w, float eps, int cols,
                                                                 int8_t* __restrict__ xq, float* __restrict__ xd,
                                                                 float* __restrict__ out) {
    __shared__ float red[32];
    launch_dependents();
    const int row = blockIdx.x, n8 = cols >> 3;
    float* xr = x + static_cast<size_t>(row) * cols;
    const float* rr = r != nullptr ? r + static_cast<size_t>(row) * cols : nullptr;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n8; i += kThreads) {
        float f[8];
        load8(xr + i * 8, f);
        if (rr != nullptr) {
            float g[8];
            load8(rr + i * 8, g);
#pragma unroll
            for (int k = 0; k < 8; ++k) f[k] += g[k];
            store8(xr + i * 8, f);
        }
#pragma unroll
        for (int k = 0; k < 8; ++k) ss = fmaf(f[k], f[k], ss);
    }
    const float rstd = rsqrtf(block_sum(ss, red) / static_cast<float>(cols) + eps);
    int8_t* q = xq + static_cast<size_t>(row) * cols;
    float* d = xd + static_cast<size_t>(row) * (cols >> 5);
    float* o = out != nullptr ? out + static_cast<size_t>(row) * cols : nullptr;
    for (int base = 0; base < n8; base += kThreads) {  // block-uniform trip count: every lane shuffles
        const int i = base + threadIdx.x;
        const bool active = i < n8;
        const int ic = active ? i : n8 - 1;
        float f[8], g[8];
        load8(xr + ic * 8, f);  // this thread's own store above (same i), or the unchanged x
        load8(w + ic * 8, g);
#pragma unroll
        for (int k = 0; k < 8; ++k) f[k] = (f[k] * rstd) * g[k];
        if (o != nullptr && active) store8(o + i * 8, f);
        round8_store(f, active, (i & 3) == 0, q + ic * 8, d + (ic >> 2));
    }
}

// grid over batch * cols / 8 groups. gate, up: rows of stride gs, us floats (16-byte aligned rows).
__global__ void __launch_bounds__(kThreads) silu_mul_q8_kernel(const float* __restrict__ gate, long long gs,
                                                              const float* __restrict__ up, long long us, int cols,
                                                              int n8, int8_t* __restrict__ xq, float* __restrict__ xd,
                                                              float* __restrict__ out) {
    launch_dependents();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = i < n8;
    const int ic = active ? i : n8 - 1;
    const int per_row = cols >> 3;
    const int row = ic / per_row, col = (ic - row * per_row) * 8;
    float f[8], u[8];
    load8(gate + row * gs + col, f);
    load8(up + row * us + col, u);
#pragma unroll
    for (int k = 0; k < 8; ++k) f[k] = f[k] / (1.0f + expf(-f[k])) * u[k];
    if (out != nullptr && active) store8(out + static_cast<size_t>(ic) * 8, f);
    round8_store(f, active, (i & 3) == 0, xq + static_cast<size_t>(ic) * 8, xd + (ic >> 2));
}

struct RopeArgs {
    const float* q;
    const float* k;
    const float* v;
    long long q_stride, k_stride, v_stride;  // floats between tokens' rows
    const float* bq;
    const float* bk;
    const float* bv;
    const float* q_norm;
    const float* k_norm;
    float eps;
    const float* cos;  // [max_pos][n_rot / 2]
    const float* sin;
    const long long* pos;  // [n_tok], device
    int max_pos, n_head, n_head_kv, head_dim, n_rot, neox;
    __half* q_out;    // [n_tok][n_head][head_dim]
    __half* k_cache;  // [n_head_kv][n_ctx][head_dim]
    __half* v_cache;
    int n_ctx;
};

// grid (n_tok, n_head + 2 n_head_kv): one block per head row (q heads, then k heads, then v heads); blockDim a
// multiple of 32 covering head_dim.
__global__ void rope_kv_kernel(RopeArgs a) {
    __shared__ float red[32];
    extern __shared__ float row[];  // [head_dim]
    const int t = blockIdx.x, slot = blockIdx.y, i = threadIdx.x, d = a.head_dim;
    const long long p = a.pos[t];
    if (p < 0 || p >= a.n_ctx || p >= a.max_pos) return;  // block-uniform; the caller checks positions
    const float* src;
    const float* bias;
    const float* norm;
    __half* dst;
    bool rope = true;
    if (slot < a.n_head) {
        src = a.q + t * a.q_stride + slot * d;
        bias = a.bq != nullptr ? a.bq + slot * d : nullptr;
        norm = a.q_norm;
        dst = a.q_out + (static_cast<size_t>(t) * a.n_head + slot) * d;
    } else if (slot < a.n_head + a.n_head_kv) {
        const int h = slot - a.n_head;
        src = a.k + t * a.k_stride + h * d;
        bias = a.bk != nullptr ? a.bk + h * d : nullptr;
        norm = a.k_norm;
        dst = a.k_cache + (static_cast<size_t>(h) * a.n_ctx + p) * d;
    } else {
        const int h = slot - a.n_head - a.n_head_kv;
        src = a.v + t * a.v_stride + h * d;
        bias = a.bv != nullptr ? a.bv + h * d : nullptr;
        norm = nullptr;
        rope = false;
        dst = a.v_cache + (static_cast<size_t>(h) * a.n_ctx + p) * d;
    }
    float val = 0.0f;
    if (i < d) {
        val = src[i];
        if (bias != nullptr) val += bias[i];
    }
    if (norm != nullptr) {  // RMSNorm over the head (qwen3's q_norm / k_norm)
        const float rstd = rsqrtf(block_sum(val * val, red) / static_cast<float>(d) + a.eps);
        if (i < d) val = (val * rstd) * norm[i];
    }
    if (!rope) {
        if (i < d) dst[i] = __float2half_rn(val);
        return;
    }
    if (i < d) row[i] = val;
    __syncthreads();
    if (i >= d) return;
    float outv = val;
    if (i < a.n_rot) {
        const int half = a.n_rot >> 1;
        int pair;
        float x0, x1;
        bool second;
        if (a.neox) {
            second = i >= half;
            pair = second ? i - half : i;
            x0 = row[pair];
            x1 = row[pair + half];
        } else {
            second = i & 1;
            pair = i >> 1;
            x0 = row[2 * pair];
            x1 = row[2 * pair + 1];
        }
        const float c = a.cos[p * half + pair], s = a.sin[p * half + pair];
        outv = second ? x0 * s + x1 * c : x0 * c - x1 * s;
    }
    dst[i] = __float2half_rn(outv);
}

// One query per head over keys 0..pos of its kv head (grouped-query: head h reads kv head h / (n_head / n_kv)),
// softmax in float32, the output rounded to int8 per 32 values (the wo GEMV's input; head_dim % 32 == 0, so a
// block never spans two heads). grid: n_head blocks of kAttnThreads; dynamic shared memory: q [d], scores [t],
// the warps' partial outputs [warps][d].
constexpr int kAttnThreads = 256;

__global__ void __launch_bounds__(kAttnThreads) attn_decode_q8_kernel(const __half* __restrict__ q,
                                                                     const __half* __restrict__ kc,
                                                                     const __half* __restrict__ vc,
                                                                     const long long* __restrict__ pos, int n_head,
                                                                     int n_kv, int n_ctx, int d, int t, float scale,
                                                                     int8_t* __restrict__ xq, float* __restrict__ xd) {
    extern __shared__ float sm[];
    __shared__ float red[32];
    const int h = blockIdx.x, kv = h / (n_head / n_kv);
    const int tid = threadIdx.x, lane = tid & 31, wid = tid >> 5, nw = kAttnThreads / 32;
    const long long p = *pos;
    const int n = static_cast<int>(p + 1 < t ? p + 1 : t);  // keys attended (p < 0: none, output 0)
    float* qs = sm;
    float* sc = sm + d;
    float* part = sc + t;
    for (int i = tid; i < d; i += kAttnThreads) qs[i] = __half2float(q[static_cast<size_t>(h) * d + i]) * scale;
    __syncthreads();
    const __half* kb = kc + static_cast<size_t>(kv) * n_ctx * d;
    const __half* vb = vc + static_cast<size_t>(kv) * n_ctx * d;
    float mx = -INFINITY;
    for (int j = tid; j < n; j += kAttnThreads) {  // a thread per key: 16-byte loads along its row
        const uint4* kr = reinterpret_cast<const uint4*>(kb + static_cast<size_t>(j) * d);
        float s = 0.0f;
        for (int i = 0; i < d / 8; ++i) {
            const uint4 u = kr[i];
            const __half2* hv = reinterpret_cast<const __half2*>(&u);
#pragma unroll
            for (int m = 0; m < 4; ++m) {
                const float2 f = __half22float2(hv[m]);
                s = fmaf(qs[8 * i + 2 * m], f.x, s);
                s = fmaf(qs[8 * i + 2 * m + 1], f.y, s);
            }
        }
        sc[j] = s;
        mx = fmaxf(mx, s);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, o));
    if (lane == 0) red[wid] = mx;
    __syncthreads();
    mx = red[0];
    for (int k = 1; k < nw; ++k) mx = fmaxf(mx, red[k]);
    float sum = 0.0f;
    for (int j = tid; j < n; j += kAttnThreads) {
        const float e = expf(sc[j] - mx);
        sc[j] = e;
        sum += e;
    }
    sum = block_sum(sum, red);  // its barriers also publish sc
    float acc[8];
#pragma unroll
    for (int m = 0; m < 8; ++m) acc[m] = 0.0f;
    const int dm = d >> 5;  // dims per lane (d <= 256)
    for (int j = wid; j < n; j += nw) {
        const float pj = sc[j];
        const __half* vr = vb + static_cast<size_t>(j) * d + lane;
#pragma unroll
        for (int m = 0; m < 8; ++m)
            if (m < dm) acc[m] = fmaf(pj, __half2float(vr[32 * m]), acc[m]);
    }
#pragma unroll
    for (int m = 0; m < 8; ++m)
        if (m < dm) part[wid * d + lane + 32 * m] = acc[m];
    __syncthreads();
    const float inv_sum = n > 0 ? 1.0f / sum : 0.0f;
    for (int blk = wid; blk < dm; blk += nw) {  // a warp per 32-block of the head's output
        const int i = blk * 32 + lane;
        float o = 0.0f;
        for (int k = 0; k < nw; ++k) o += part[k * d + i];
        o *= inv_sum;
        float m = fabsf(o);
        int bad = o != o;
#pragma unroll
        for (int s = 16; s > 0; s >>= 1) {
            m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, s));
            bad |= __shfl_xor_sync(0xFFFFFFFFu, bad, s);
        }
        const float inv = m > 0.0f ? 127.0f / m : 0.0f;
        const uint32_t b = __float_as_uint(__fadd_rn(__fmul_rn(o, inv), 12582912.0f));
        const size_t at = static_cast<size_t>(h) * d + i;
        xq[at] = static_cast<int8_t>(b & 0xFFu);
        if (lane == 0) xd[at >> 5] = bad ? __int_as_float(0x7FC00000) : m / 127.0f;
    }
}

}  // namespace

extern "C" AWQ_API int awq_cuda_attn_decode_q8(const void* q, const void* k_cache, const void* v_cache,
                                               const long long* pos, int n_head, int n_head_kv, int n_ctx,
                                               int head_dim, int t, float scale, void* ws, long long ws_bytes,
                                               void* stream) {
    const int cols = n_head * head_dim;
    const long long need = static_cast<long long>(cols) + static_cast<long long>(cols / 32) * 4;
    if (n_head < 1 || n_head_kv < 1 || n_head % n_head_kv || head_dim < 32 || head_dim > 256 || head_dim % 32 ||
        t < 1 || t > n_ctx || ws == nullptr || ws_bytes < need)
        return cudaErrorInvalidValue;
    const size_t smem = (static_cast<size_t>(head_dim) * (1 + kAttnThreads / 32) + t) * sizeof(float);
    if (smem > 48 * 1024) return cudaErrorInvalidValue;
    int8_t* xq = static_cast<int8_t*>(ws);
    float* xd = reinterpret_cast<float*>(static_cast<uint8_t*>(ws) + cols);
    attn_decode_q8_kernel<<<n_head, kAttnThreads, smem, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const __half*>(q), static_cast<const __half*>(k_cache), static_cast<const __half*>(v_cache), pos,
        n_head, n_head_kv, n_ctx, head_dim, t, scale, xq, xd);
    return static_cast<int>(cudaGetLastError());
}

extern "C" AWQ_API int awq_cuda_add_rmsnorm_q8(float* x, const float* r, const float* w, float eps, int batch,
                                               int cols, void* ws, long long ws_bytes, float* out, void* stream) {
    const long long need = static_cast<long long>(batch) * cols + static_cast<long long>(batch) * (cols / 32) * 4;
    if (batch < 1 || cols < 32 || cols % 32 || ws == nullptr || ws_bytes < need) return cudaErrorInvalidValue;
    int8_t* xq = static_cast<int8_t*>(ws);
    float* xd = reinterpret_cast<float*>(static_cast<uint8_t*>(ws) + static_cast<size_t>(batch) * cols);
    add_rmsnorm_q8_kernel<<<batch, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, r, w, eps, cols, xq, xd, out);
    return static_cast<int>(cudaGetLastError());
}

extern "C" AWQ_API int awq_cuda_silu_mul_q8(const float* gate, long long gate_stride, const float* up,
                                            long long up_stride, int batch, int cols, void* ws, long long ws_bytes,
                                            float* out, void* stream) {
    const long long need = static_cast<long long>(batch) * cols + static_cast<long long>(batch) * (cols / 32) * 4;
    if (batch < 1 || cols < 32 || cols % 32 || ws == nullptr || ws_bytes < need || gate_stride % 4 || up_stride % 4)
        return cudaErrorInvalidValue;
    int8_t* xq = static_cast<int8_t*>(ws);
    float* xd = reinterpret_cast<float*>(static_cast<uint8_t*>(ws) + static_cast<size_t>(batch) * cols);
    const int n8 = batch * (cols / 8);
    silu_mul_q8_kernel<<<(n8 + kThreads - 1) / kThreads, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        gate, gate_stride, up, up_stride, cols, n8, xq, xd, out);
    return static_cast<int>(cudaGetLastError());
}

extern "C" AWQ_API int awq_cuda_rope_kv(const float* q, long long q_stride, const float* k, long long k_stride,
                                        const float* v, long long v_stride, const float* bq, const float* bk,
                                        const float* bv, const float* q_norm, const float* k_norm, float eps,
                                        const float* cos, const float* sin, int max_pos, const long long* pos,
                                        int n_tok, int n_head, int n_head_kv, int head_dim, int n_rot, int neox,
                                        void* q_out, void* k_cache, void* v_cache, int n_ctx, void* stream) {
    if (n_tok < 1 || n_head < 1 || n_head_kv < 1 || head_dim < 2 || head_dim > 1024 || n_rot < 0 ||
        n_rot > head_dim || n_rot % 2 || n_ctx < 1 || max_pos < 1)
        return cudaErrorInvalidValue;
    RopeArgs a{q, k, v, q_stride, k_stride, v_stride, bq, bk, bv, q_norm, k_norm, eps, cos, sin, pos, max_pos,
               n_head, n_head_kv, head_dim, n_rot, neox, static_cast<__half*>(q_out), static_cast<__half*>(k_cache),
               static_cast<__half*>(v_cache), n_ctx};
    const int threads = (head_dim + 31) / 32 * 32;
    const dim3 grid(static_cast<unsigned>(n_tok), static_cast<unsigned>(n_head + 2 * n_head_kv));
    rope_kv_kernel<<<grid, threads, head_dim * sizeof(float), static_cast<cudaStream_t>(stream)>>>(a);
    return static_cast<int>(cudaGetLastError());
}
