// Q6_K: GEMV and dequantization instantiated for this format (one translation unit per format, built in
// parallel).
#include "internal.cuh"
#include "dequant.cuh"
#include "gemv.cuh"
#include "q6_k.cuh"

cudaError_t awq_gemv_q6_k(awq::Planes w, const void* x, int act, float* y, int rows, int cols, int batch, int nr,
                        int mode, void* ws, long long ws_bytes, cudaStream_t s) {
    return awq::launch_gemv<awq::FmtQ6_K>(w, x, act, y, rows, cols, batch, nr, mode, ws, ws_bytes, s);
}

cudaError_t awq_dequant_q6_k(awq::Planes w, void* out, int out_type, int rows, int cols, cudaStream_t s) {
    return awq::launch_dequant<awq::FmtQ6_K>(w, out, out_type, rows, cols, s);
}
