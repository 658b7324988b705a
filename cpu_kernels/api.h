/* The C API that Python calls through cffi (this file is also the cffi cdef: declarations only).
 * Return codes: 0 ok, -1 type not supported, -2 bad sizes, -3 out of memory, -4 threads failed. */
#ifndef AWQ_API_H
#define AWQ_API_H
#include <stdint.h>

/* ISA ids: 0 scalar, 1 avx2, 2 avx512, 3 neon */
int awq_isa_available(int isa);
int awq_isa_best(void);
int awq_set_isa(int isa);
int awq_get_isa(void);
const char *awq_isa_name(int isa);
const char *awq_kernels_name(void);
/* hash of the C sources this extension was built from */
const char *awq_build_id(void);

/* qtype: ggml type id. Bytes of one quantized activation row of `cols` floats (0: unsupported). */
int64_t awq_act_row_bytes(int qtype, int64_t cols);
int awq_quantize_act(int qtype, int64_t cols, const float *x, void *xq);
/* one row of weights against one quantized activation row (for tests) */
int awq_vec_dot(int qtype, int64_t cols, const void *w_row, const void *xq, float *out);

/* y[n, rows] = x[n, cols] @ W[rows, cols]^T, W rows of row_bytes bytes; threads over rows */
int awq_matmul(int qtype, const void *w, int64_t rows, int64_t row_bytes, int64_t cols,
               const float *x, int64_t n, float *y, int nthreads);
/* The prompt GEMM over rows interleaved by 8 (Q4_0, Q4_1, Q5_0, Q5_1; layouts blk_q4_0x8 ... blk_q5_1x8). packed_bytes: the
 * size of the interleaved copy (0: type not packable, or rows not a multiple of 8); pack writes it from the
 * file's rows; matmul_packed is awq_matmul on it (wp_bytes must be that size). packed_gemm_native: whether the current ISA has its own
 * kernel for it (if not, matmul_packed runs the scalar one: keep the file's rows there). */
int awq_packed_gemm_native(int qtype);
int64_t awq_packed_bytes(int qtype, int64_t rows, int64_t cols);
int awq_pack(int qtype, const void *w, int64_t rows, int64_t row_bytes, int64_t cols, void *out, int64_t out_bytes);
int awq_matmul_packed(int qtype, const void *wp, int64_t wp_bytes, int64_t rows, int64_t cols, const float *x,
                      int64_t n, float *y, int nthreads);
/* out[i, cols] = dequantized row ids[i] of W (ids checked against rows) */
int awq_get_rows(int qtype, const void *w, int64_t rows, int64_t row_bytes, int64_t cols,
                 const int64_t *ids, int64_t n_ids, float *out, int nthreads);

/* ---- decode step: one token through whole transformer layers (layer.c) ---------------------------
 * One weight matrix as stored in the file: rows of row_bytes bytes, each `cols` elements of ggml type qtype;
 * or, with packed = 1, awq_pack's copy of it (rows interleaved by 8; row_bytes still a file row's size). */
typedef struct {
    const void *w;
    int64_t rows, row_bytes, cols;
    int qtype;
    int packed;
} awq_mat_t;

/* Shapes and model-wide tables shared by every layer. rope_cos/rope_sin: [rope_rows, head_dim / 2], the angle
 * table row `pos` is used. rope_neox: 0 rotates adjacent pairs (x[2i], x[2i+1]) (llama), 1 halves (x[i],
 * x[i + head_dim/2]) (qwen2/3). */
typedef struct {
    int64_t n_embd, n_head, n_head_kv, head_dim, n_ff, n_ctx, rope_rows;
    float eps;
    int rope_neox;
    const float *rope_cos, *rope_sin;
} awq_decode_cfg_t;

/* One layer: norms [n_embd]; optional (NULL) biases [n_head * head_dim] / [n_head_kv * head_dim] and per-head
 * q/k norms [head_dim]; the seven matrices; its KV cache, float32 [n_head_kv, n_ctx, head_dim] each. */
typedef struct {
    const float *attn_norm, *ffn_norm;
    const float *bq, *bk, *bv;
    const float *q_norm, *k_norm;
    awq_mat_t wq, wk, wv, wo, gate, up, down;
    float *k_cache, *v_cache;
} awq_layer_t;

/* x[n_embd] (in/out) through layers[0 .. n_layers-1] at position pos (0 <= pos < n_ctx, pos < rope_rows):
 * keys/values of pos are written into each layer's cache, attention reads positions 0..pos. */
int awq_decode_layers(const awq_decode_cfg_t *cfg, const awq_layer_t *layers, int n_layers, int64_t pos,
                      float *x, int nthreads);
/* the model's head for one token: logits[out->rows] = (rms_norm(x) * norm) out^T; x[n_embd] is not modified */
int awq_decode_head(const awq_decode_cfg_t *cfg, const float *norm, const awq_mat_t *out, const float *x,
                    float *logits, int nthreads);

/* memory read bandwidth probe: sums bytes/8 64-bit words of p over nthreads threads (returns the sum) */
uint64_t awq_stream_read(const void *p, int64_t bytes, int nthreads);
#endif
