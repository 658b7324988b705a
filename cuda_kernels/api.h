/* The C API of libawq_gguf_cuda.so, bound from Python in cffi's ABI mode (_lib.py's CDEF repeats these
 * declarations; keep the two in sync and bump AWQ_CUDA_ABI on any change).
 *
 * Every pointer is a device pointer (torch's data_ptr()), every call is asynchronous on `stream` (a
 * cudaStream_t, e.g. torch.cuda.current_stream().cuda_stream) and returns 0 or an error code:
 * a cudaError_t value, or AWQ_ERR_TYPE for a weight type without kernels. awq_cuda_error_string names it.
 *
 * qtype: GGML type id (2 = Q4_0, 8 = Q8_0, 12 = Q4_K, 14 = Q6_K); p0, p1, p2: the format's planes (see the
 * format's .cuh; unused planes may be NULL). act: 0 = fp16, 1 = bf16 activations, 2 = float32 (int8 modes only: rounded
 * to int8 from float32), 3 = already rounded into ws by a fused kernel below (int8 modes only; x unused). nr: rows per
 * warp (1, 2, 4; 0 = default). mode (gemv.cuh has the details): 1 = register prefetch, 2 = cp.async ring, 3 = 1 +
 * factored batch-1 math (float activations, ~1e-6); the int8-activation modes (x rounded per 32 values, dp4a):
 * 4 plain, 5 = 4 with programmatic dependent launch, 6-9 = 5 with deeper prefetch / split columns / a register cap,
 * 10, 11 = the stream kernel (batch 1: one kernel that rounds x itself and streams the weights through shared-memory
 * rings by bulk copies, gemv_stream.cuh; above batch 1 mode 7), 12-15 = 5, 6, 7, 7 deep chained with the next call,
 * 16-19 = batch-1 chained kernels on the format's 64-weight chunks (Q4_K; above batch 1 mode 7). 0 = default: with a
 * workspace the chained int8 kernels at batch 1 (Q4_0, Q8_0: 14; Q4_K: 12; Q6_K: 12, 13 when cols > rows) and 7
 * above; without one 3 at batch 1 and 1 above. Planes must be padded to a multiple of 16 bytes (modes 10, 11 copy
 * 16-byte aligned spans). ws: 16-byte aligned device workspace of ws_bytes >= batch * cols * (1 + 4 / 32) bytes,
 * needed by the int8 modes (may be NULL otherwise). out_type: 0 = fp16, 1 = bf16, 2 = float32. x: [batch, cols],
 * y: float32 [batch, rows], both contiguous, x 16-byte aligned.
 */
#ifndef AWQ_GGUF_CUDA_API_H
#define AWQ_GGUF_CUDA_API_H

#define AWQ_CUDA_ABI 6
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
/* Benchmark probe (read_probe.cu): reads nbytes at p (16-byte aligned, a multiple of 16) and xors them into out[0..63],
 * launched with programmatic dependent launch like the chained GEMVs (modes 12-19): the ceiling a GEMV reading the
 * same bytes could reach. */
AWQ_API int awq_cuda_read_probe(const void* p, long long nbytes, unsigned* out, void* stream);

/* Fused elementwise kernels of the GPU runner's decode step (fused.cu). ws: the GEMV workspace of batch x cols
 * (xq int8 [batch][cols], then xd float32 [batch][cols / 32]); out: optional float32 [batch][cols] (NULL: none).
 * add_rmsnorm_q8: x [batch][cols] += r (r may be NULL), then RMSNorm(x) * w rounded into ws.
 * silu_mul_q8: silu(gate) * up rounded into ws; gate / up rows are gate_stride / up_stride floats apart.
 * rope_kv: q/k/v float32 rows (strides in floats per token) + optional biases, optional per-head RMSNorm of q and k,
 * RoPE (neox 0: pairs (2i, 2i+1), 1: (i, i + n_rot/2); cos/sin float32 [max_pos][n_rot/2]) at positions pos (int64
 * [n_tok], device) -> q_out float16 [n_tok][n_head][head_dim], k and v float16 into the caches [n_head_kv][n_ctx]
 * [head_dim] at each position.
 * attn_decode_q8: q float16 [n_head][head_dim] (head_dim % 32 == 0, <= 256) attends keys 0..min(pos, t - 1) of its kv
 * head (head h: kv head h / (n_head / n_head_kv); caches float16 [n_head_kv][n_ctx][head_dim]; scores scaled by
 * scale), softmax in float32; the output [n_head * head_dim] rounded into ws (batch 1). t: keys the kernel's shared
 * memory holds (about (9 head_dim + t) * 4 bytes, at most 48 KiB). */
AWQ_API int awq_cuda_add_rmsnorm_q8(float* x, const float* r, const float* w, float eps, int batch, int cols, void* ws,
                                    long long ws_bytes, float* out, void* stream);
AWQ_API int awq_cuda_silu_mul_q8(const float* gate, long long gate_stride, const float* up, long long up_stride,
                                 int batch, int cols, void* ws, long long ws_bytes, float* out, void* stream);
AWQ_API int awq_cuda_rope_kv(const float* q, long long q_stride, const float* k, long long k_stride, const float* v,
                             long long v_stride, const float* bq, const float* bk, const float* bv, const float* q_norm,
                             const float* k_norm, float eps, const float* cos, const float* sin, int max_pos,
                             const long long* pos, int n_tok, int n_head, int n_head_kv, int head_dim, int n_rot,
                             int neox, void* q_out, void* k_cache, void* v_cache, int n_ctx, void* stream);
AWQ_API int awq_cuda_attn_decode_q8(const void* q, const void* k_cache, const void* v_cache, const long long* pos,
                                    int n_head, int n_head_kv, int n_ctx, int head_dim, int t, float scale, void* ws,
                                    long long ws_bytes, void* stream);

#ifdef __cplusplus
}
#endif

#endif
