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
/* out[i, cols] = dequantized row ids[i] of W (ids checked against rows) */
int awq_get_rows(int qtype, const void *w, int64_t rows, int64_t row_bytes, int64_t cols,
                 const int64_t *ids, int64_t n_ids, float *out, int nthreads);

/* memory read bandwidth probe: sums bytes/8 64-bit words of p over nthreads threads (returns the sum) */
uint64_t awq_stream_read(const void *p, int64_t bytes, int nthreads);
#endif
