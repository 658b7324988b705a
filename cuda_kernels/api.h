/* The C API of libawq_gguf_cuda.so, bound from Python in cffi's ABI mode (_lib.py's CDEF repeats these
 * declarations; keep the two in sync and bump AWQ_CUDA_ABI on any change).
 *
 * Every pointer is a device pointer (torch's data_ptr()), every call is asynchronous on `stream` (a
 * cudaStream_t, e.g. torch.cuda.current_stream().cuda_stream) and returns 0 or an error code:
 * a cudaError_t value, or AWQ_ERR_TYPE for a weight type without kernels. awq_cuda_error_string names it.
 *
 * qtype: GGML type id (2 = Q4_0, 8 = Q8_0, 12 = Q4_K, 14 = Q6_K); p0, p1, p2: the format's planes (see the
 * format's .cuh; unused planes may be NULL). act: 0 = fp16, 1 = bf16 activations, 2 = float32 (modes 4-9 only: rounded to int8 from float32). nr: rows per warp (1, 2,
 * 4; 0 = default); mode: 1 = register prefetch, 2 = cp.async ring, 3 = 1 + factored batch-1 math, 4 = int8
 * activations (dp4a), 5 = 4 with programmatic dependent launch, 6-9 = 5 with deeper prefetch / split columns / a register cap
 * (0 = default: 4 with a workspace, else 3 at
 * batch 1 and 1 above); see gemv.cuh. ws: 16-byte aligned device workspace of ws_bytes >= batch * cols * (1 + 4 / 32)
 * bytes, needed by modes 4-9 (may be NULL otherwise). out_type: 0 = fp16,
 * 1 = bf16, 2 = float32. x: [batch, cols], y: float32 [batch, rows], both contiguous, x 16-byte aligned.
 */
#ifndef AWQ_GGUF_CUDA_API_H
#define AWQ_GGUF_CUDA_API_H

#define AWQ_CUDA_ABI 3
#define AWQ_ERR_TYPE (-1)

#if defined(__GNUC__)
#define AWQ_API __attribute__((visibility("default")))
#else
#define AWQ_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

AWQ_API int awq_cuda_abi_version(void);
AWQ_API int awq_cuda_gemv(int qtype, const void* p0, const void* p1, const void* p2, const void* x, int act, float* y,
                  int rows, int cols, int batch, int nr, int mode, void* ws, long long ws_bytes, void* stream);
AWQ_API int awq_cuda_dequant(int qtype, const void* p0, const void* p1, const void* p2, void* out, int out_type, int rows,
                     int cols, void* stream);
AWQ_API const char* awq_cuda_error_string(int code);

#ifdef __cplusplus
}
#endif

#endif
