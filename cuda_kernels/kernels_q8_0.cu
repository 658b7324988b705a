// Q8_0: GEMV and dequantization instantiated for this format (one translation unit per format, built in
// parallel).
#include "internal.cuh"
#include "dequant.cuh"
#include "gemv.cuh"
#include "q8_0.cuh"

cudaError_t awq_gemv_q8_0(awq::Planes w, const void* x, int act, float* y, int rows, int cols, int batch, int nr,
                        int mode, void* ws, long long ws_bytes, cudaStream_t s) {
    return awq::launch_gemv<awq::FmtQ8_0>(w, x, act, y, rows, cols, batch, nr, mode, ws, ws_bytes, s);
}

cudaError_t awq_dequant_q8_0(awq::Planes w, void* out, int out_type, int rows, int cols, cudaStream_t s) {
    return awq::launch_dequant<awq::FmtQ8_0>(w, out, out_type, rows, cols, s);
}
