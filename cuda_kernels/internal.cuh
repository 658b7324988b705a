// The per-format launchers (defined in kernels_<format>.cu) that api.cu dispatches to.
#pragma once

#include <cuda_runtime.h>

#include "common.cuh"

#define AWQ_DECLARE_FORMAT(name)                                                                              \
    cudaError_t awq_gemv_##name(awq::Planes w, const void* x, int act, float* y, int rows, int cols, int batch, \
                                int nr, int mode, void* ws, long long ws_bytes, cudaStream_t s);                      \
    cudaError_t awq_dequant_##name(awq::Planes w, void* out, int out_type, int rows, int cols, cudaStream_t s);

AWQ_DECLARE_FORMAT(q4_0)
AWQ_DECLARE_FORMAT(q8_0)
AWQ_DECLARE_FORMAT(q4_k)
AWQ_DECLARE_FORMAT(q6_k)
