// The extern "C" entry points (api.h): dispatch on the GGML type id to the per-format launchers.
#include "api.h"
#include "internal.cuh"

namespace {

awq::Planes planes(const void* p0, const void* p1, const void* p2) {
    return awq::Planes{static_cast<const uint8_t*>(p0), static_cast<const uint8_t*>(p1),
                       static_cast<const uint8_t*>(p2)};
}

}  // namespace

// Multiprocessors of the current device (cached per device id).
int awq::sm_count() {
    static int cache[64] = {0};
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) dev = 0;
    if (cache[dev] == 0) {
        int n = 0;
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
        cache[dev] = n > 0 ? n : 1;
    }
    return cache[dev];
}

extern "C" AWQ_API int awq_cuda_abi_version(void) { return AWQ_CUDA_ABI; }

extern "C" AWQ_API int awq_cuda_gemv(int qtype, const void* p0, const void* p1, const void* p2, const void* x, int act,
                                     float* y, int rows, int cols, int batch, int nr, int mode, void* ws,
                                     long long ws_bytes, void* stream) {
    const awq::Planes w = planes(p0, p1, p2);
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    cudaError_t e;
    switch (qtype) {
        case 2: e = awq_gemv_q4_0(w, x, act, y, rows, cols, batch, nr, mode, ws, ws_bytes, s); break;
        case 8: e = awq_gemv_q8_0(w, x, act, y, rows, cols, batch, nr, mode, ws, ws_bytes, s); break;
        case 12: e = awq_gemv_q4_k(w, x, act, y, rows, cols, batch, nr, mode, ws, ws_bytes, s); break;
        case 14: e = awq_gemv_q6_k(w, x, act, y, rows, cols, batch, nr, mode, ws, ws_bytes, s); break;
        default: return AWQ_ERR_TYPE;
    }
    return static_cast<int>(e);
}

extern "C" AWQ_API int awq_cuda_dequant(int qtype, const void* p0, const void* p1, const void* p2, void* out, int out_type,
                                int rows, int cols, void* stream) {
    const awq::Planes w = planes(p0, p1, p2);
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    cudaError_t e;
    switch (qtype) {
        case 2: e = awq_dequant_q4_0(w, out, out_type, rows, cols, s); break;
        case 8: e = awq_dequant_q8_0(w, out, out_type, rows, cols, s); break;
        case 12: e = awq_dequant_q4_k(w, out, out_type, rows, cols, s); break;
        case 14: e = awq_dequant_q6_k(w, out, out_type, rows, cols, s); break;
        default: return AWQ_ERR_TYPE;
    }
    return static_cast<int>(e);
}

extern "C" AWQ_API const char* awq_cuda_error_string(int code) {
    if (code == AWQ_ERR_TYPE) return "weight type without CUDA kernels";
    return cudaGetErrorString(static_cast<cudaError_t>(code));
}
