// Shared device helpers of the awq-gguf CUDA kernels: loads, exact small-integer-to-float tricks, activations.
//
// The weight formats (q4_0.cuh, q8_0.cuh, q4_k.cuh, q6_k.cuh) each turn 32 weights of a row (a "chunk") into
// four "pieces" of 8 consecutive columns. Every weight is produced as  w = A * v - C  with one fused multiply-add,
// where v = 1 + q / 128 (or 1 + u / 32768 for 8-bit values) is the integer q placed into a float's mantissa by
// one byte permute (PRMT); A and C are per-sub-block floats. For Q4_0, Q8_0 and Q6_K, A and C are exact, so w is
// the exact ggml value rounded once; for Q4_K, C = A + dmin * m carries one float rounding (relative 2^-24).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace awq {

// Up to three device planes of one weight matrix; what each holds is the format's business (see its header).
struct Planes {
    const uint8_t* p0;
    const uint8_t* p1;
    const uint8_t* p2;
};

// ACT_F32: float32 x, read only by the int8-activation path's rounding kernel (quant_x_kernel, gemv.cuh).
// ACT_PRE: x is already rounded into the workspace (fused.cu's kernels wrote it): the int8 path skips its rounding.
enum Act { ACT_F16 = 0, ACT_BF16 = 1, ACT_F32 = 2, ACT_PRE = 3 };

int sm_count();  // multiprocessors of the current device (api.cu)

// Launches kernel on s with programmatic dependent launch allowed: it may start while the previous kernel on s
// finishes (the kernel calls cudaGridDependencySynchronize before it reads what that kernel wrote).
template <typename... KArgs, typename... Args>
inline cudaError_t launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                              Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}
enum Out { OUT_F16 = 0, OUT_BF16 = 1, OUT_F32 = 2 };

// Weight loads: read once, never reused by this block, so keep them out of L1.
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

// Weight loads whose 32-byte sectors a second load of the same lane reads next (the other half): through L1.
__device__ __forceinline__ uint4 ld_cached16(const void* p) {
    uint4 r;
    asm("ld.global.nc.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

__device__ __forceinline__ uint2 ld_stream8(const void* p) {
    uint2 r;
    asm("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0, %1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p));
    return r;
}

// Asynchronous global -> shared copies (LDGSTS): the ring of stages in gemv.cuh keeps many bytes in flight
// without holding them in registers. Only the issuing thread reads what it copied, so wait_group suffices.
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
}

__device__ __forceinline__ void cp_async8(void* dst, const void* src) {
    const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(d), "l"(src) : "memory");
}

__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
    const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(d), "l"(src) : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

// The fp16 scale of 2-byte entry i of a plane, fetched as the aligned 4-byte word holding it (planes of
// 2-byte entries are padded to an even count by ops.py).
__device__ __forceinline__ const void* half_word_addr(const uint8_t* plane, size_t i) { return plane + (i & ~size_t(1)) * 2; }
__device__ __forceinline__ uint32_t half_from_word(uint32_t word, size_t i) { return (word >> (16 * (i & 1))) & 0xFFFFu; }

__device__ __forceinline__ uint32_t ld_u16(const void* p) {
    return __ldg(reinterpret_cast<const unsigned short*>(p));
}

__device__ __forceinline__ uint4 ld_16(const void* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }

__device__ __forceinline__ float half_bits(uint32_t bits) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(bits & 0xFFFFu)));
}

// Byte K of w (which must be 0x80 | q with q < 128) -> 1 + q / 128: the byte lands in bits 16..23, whose top bit
// is the exponent's lowest, under 0x3F in bits 24..31 (exponent 127).
template <int K>
__device__ __forceinline__ float unit7(uint32_t w) {
    return __uint_as_float(__byte_perm(w, 0x3F000000u, 0x7054u | (K << 8)));
}

// Byte K of w (an unsigned u < 256) -> 1 + u / 32768: the byte lands in bits 8..15, under 0x3F80.
template <int K>
__device__ __forceinline__ float unit8(uint32_t w) {
    return __uint_as_float(__byte_perm(w, 0x3F800000u, 0x7604u | (K << 4)));
}

// Four 7-bit values (bytes of w, each already 0x80 | q) -> A * (1 + q/128) - C.
__device__ __forceinline__ void fma4_unit7(uint32_t w, float A, float C, float* out) {
    out[0] = fmaf(A, unit7<0>(w), -C);
    out[1] = fmaf(A, unit7<1>(w), -C);
    out[2] = fmaf(A, unit7<2>(w), -C);
    out[3] = fmaf(A, unit7<3>(w), -C);
}

__device__ __forceinline__ void unit7x4(uint32_t w, float* out) {
    out[0] = unit7<0>(w);
    out[1] = unit7<1>(w);
    out[2] = unit7<2>(w);
    out[3] = unit7<3>(w);
}

__device__ __forceinline__ void fma4_unit8(uint32_t w, float A, float C, float* out) {
    out[0] = fmaf(A, unit8<0>(w), -C);
    out[1] = fmaf(A, unit8<1>(w), -C);
    out[2] = fmaf(A, unit8<2>(w), -C);
    out[3] = fmaf(A, unit8<3>(w), -C);
}

// 8 consecutive activations (16 aligned bytes of fp16 or bf16) -> floats.
template <int ACT>
__device__ __forceinline__ void load_x8(const uint16_t* p, float* xf) {
    const uint4 v = ld_16(p);
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        if (ACT == ACT_BF16) {
            xf[2 * i] = __uint_as_float(w[i] << 16);
            xf[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
        } else {
            const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[i]));
            xf[2 * i] = f.x;
            xf[2 * i + 1] = f.y;
        }
    }
}

// The sum of v over the warp's 32 lanes, in every lane.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, off);
    return v;
}

// ---- int8-activation path (gemv.cuh, modes 4 and 5) ----

// d = sum of the 4 byte products of a and b, plus c: a unsigned (SIGNED_A false) or signed bytes, b signed.
template <bool SIGNED_A>
__device__ __forceinline__ int dp4a(uint32_t a, uint32_t b, int c) {
    int d;
    if (SIGNED_A) {
        asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    } else {
        asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    }
    return d;
}

// 8 int8 activations (8 aligned bytes), read through L1: every warp of a block reads the same x.
__device__ __forceinline__ uint2 ld_x8(const int8_t* p) { return __ldg(reinterpret_cast<const uint2*>(p)); }

// The int8 rounding of one 32-value block whose 4 groups of 8 sit in 4 consecutive lanes (4-aligned; every lane of
// the warp calls this): d = max|x| / 127, q = round-half-even(x * (127 / max|x|)) in float32 (adding 1.5 * 2^23
// leaves q mod 256 in the low byte), bit-exact with ops.round_activations_q8. This lane's 8 q -> lo, hi (bytes in
// column order); returns d (NaN for a block holding NaN; Inf gives d = Inf, q = 0, so its products are NaN too).
// The one rounding of the project: quant_x_kernel, the stream GEMV's prologue and fused.cu's kernels call it.
__device__ __forceinline__ float round8_q8(const float (&f)[8], uint32_t& lo, uint32_t& hi) {
    float m = 0.0f;
    int bad = 0;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        m = fmaxf(m, fabsf(f[k]));
        bad |= f[k] != f[k];
    }
    m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, 1));
    m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, 2));
    bad |= __shfl_xor_sync(0xFFFFFFFFu, bad, 1);
    bad |= __shfl_xor_sync(0xFFFFFFFFu, bad, 2);
    const float inv = m > 0.0f ? 127.0f / m : 0.0f;
    uint32_t b[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) b[k] = __float_as_uint(__fadd_rn(__fmul_rn(f[k], inv), 12582912.0f));
    lo = __byte_perm(__byte_perm(b[0], b[1], 0x0040), __byte_perm(b[2], b[3], 0x0040), 0x5410);
    hi = __byte_perm(__byte_perm(b[4], b[5], 0x0040), __byte_perm(b[6], b[7], 0x0040), 0x5410);
    return bad ? __int_as_float(0x7FC00000) : m / 127.0f;
}

// ---- bulk copies completing on an mbarrier (sm_90; the stream GEMV's ring, gemv_stream.cuh) ----

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}

// Makes the barriers' initialization visible to the copy engine (the async proxy).
__device__ __forceinline__ void mbar_fence_init() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }

// One arrival that also announces `bytes` of copies completing on this phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}

// Spins until the phase of the given parity has completed (its copies have landed and are visible).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile(
            "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
            : "=r"(done)
            : "r"(smem_addr(bar)), "r"(parity)
            : "memory");
    } while (!done);
}

// bytes (a multiple of 16) from global src to shared dst (both 16-byte aligned) by the copy engine; completes
// on bar (complete_tx).
__device__ __forceinline__ void bulk_copy_g2s(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 ::"r"(smem_addr(dst)), "l"(src), "r"(bytes), "r"(smem_addr(bar))
                 : "memory");
}

// Programmatic dependent launch (sm_90): the producer lets the dependent grid start early; the dependent waits
// for the producer's completion (and its memory) before its first read of the producer's output. Both are
// no-ops for a grid launched without the attribute.
__device__ __forceinline__ void griddep_launch_dependents() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
__device__ __forceinline__ void griddep_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }

// 8 floats -> 8 consecutive outputs of type OUT (16 or 32 aligned bytes).
template <int OUT>
__device__ __forceinline__ void store8(void* dst, const float* v) {
    if (OUT == OUT_F32) {
        float4* d = reinterpret_cast<float4*>(dst);
        d[0] = make_float4(v[0], v[1], v[2], v[3]);
        d[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
        uint32_t w[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            if (OUT == OUT_BF16) {
                __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
                w[i] = *reinterpret_cast<uint32_t*>(&h);
            } else {
                __half2 h = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
                w[i] = *reinterpret_cast<uint32_t*>(&h);
            }
        }
        *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

}  // namespace awq
