// The bandwidth ceiling probe of tools/bench_cuda.py: a kernel that only reads n bytes (16-byte loads kept out of
// L1, as the GEMVs load weights) and launches like the chained GEMVs (programmatic
// dependent launch: it lets its successor start at once and waits for its predecessor only before its one store
// per block). What a GEMV over the same bytes could reach at most in the same back-to-back harness.
#include "api.h"
#include "common.cuh"
#include "internal.cuh"

namespace {

// Shaped like the GEMVs' grids (128-thread blocks, at most 4 resident per SM, so the next grid's blocks fit beside
// this one's), each thread 8 loads in flight.
constexpr int kProbeThreads = 128;
constexpr int kProbeDepth = 8;

__global__ void __launch_bounds__(kProbeThreads) read_probe_kernel(const uint4* __restrict__ p, long long n16,
                                                                   unsigned* __restrict__ out) {
    __shared__ unsigned part[kProbeThreads / 32];
    awq::griddep_launch_dependents();
    const long long stride = static_cast<long long>(gridDim.x) * kProbeThreads;
    unsigned acc = 0;
    long long i = static_cast<long long>(blockIdx.x) * kProbeThreads + threadIdx.x;
    for (; i + (kProbeDepth - 1) * stride < n16; i += kProbeDepth * stride) {
        uint4 v[kProbeDepth];
#pragma unroll
        for (int k = 0; k < kProbeDepth; ++k) v[k] = awq::ld_stream16(p + i + k * stride);
#pragma unroll
        for (int k = 0; k < kProbeDepth; ++k) acc ^= v[k].x ^ v[k].y ^ v[k].z ^ v[k].w;
    }
    for (; i < n16; i += stride) {
        const uint4 v = awq::ld_stream16(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    acc = __reduce_xor_sync(0xFFFFFFFFu, acc);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = acc;
    __syncthreads();
    awq::griddep_wait();
    if (threadIdx.x == 0) {
        unsigned x = 0;
#pragma unroll
        for (int w = 0; w < kProbeThreads / 32; ++w) x ^= part[w];
        atomicXor(out + blockIdx.x % 64, x);
    }
}

}  // namespace

extern "C" AWQ_API int awq_cuda_read_probe(const void* p, long long nbytes, unsigned* out, void* stream) {
    if (p == nullptr || out == nullptr || nbytes < 16 || nbytes % 16 || reinterpret_cast<uintptr_t>(p) % 16)
        return static_cast<int>(cudaErrorInvalidValue);
    const long long n16 = nbytes / 16;
    long long blocks = (n16 + kProbeThreads - 1) / kProbeThreads;
    const long long resident = 4LL * awq::sm_count();
    if (blocks > resident) blocks = resident;
    return static_cast<int>(awq::launch_pdl(read_probe_kernel, dim3(static_cast<unsigned>(blocks)),
                                            dim3(kProbeThreads), 0, static_cast<cudaStream_t>(stream),
                                            static_cast<const uint4*>(p), n16, out));
}
