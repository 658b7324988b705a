/* Scalar building blocks that the SIMD variants reuse (fallbacks, K-block unpacking for tests). */
#ifndef AWQ_SCALAR_H
#define AWQ_SCALAR_H

#include "kernels.h"

/* One K super-block as 256 unsigned values, 16 integer scales and mins (per 16 elements), an offset and
 * two float factors:  w[i] = d * sc[i/16] * (q[i] - off) - dmin * mn[i/16] */
typedef struct { uint8_t q[256]; int16_t sc[16]; int16_t mn[16]; int off; float d, dmin; } kblock_t;

void awq_unpack_q2_K(const void *b, kblock_t *k);
void awq_unpack_q3_K(const void *b, kblock_t *k);
void awq_unpack_q4_K(const void *b, kblock_t *k);
void awq_unpack_q5_K(const void *b, kblock_t *k);
void awq_unpack_q6_K(const void *b, kblock_t *k);
/* row r (0..7) of one super-block of interleaved Q2_K / Q3_K rows (t = AWQ_Q2_K: blk_q2_Kx8, AWQ_Q3_K: blk_q3_Kx8) */
void awq_unpack_x8k(int t, const void *b, int r, kblock_t *k);

void awq_scalar_quantize_q8_32(int64_t n, const float *x, void *y);
void awq_scalar_quantize_q8_K(int64_t n, const float *x, void *y);

/* fills every entry with the scalar kernels except gemm8 (an ISA without its own interleaved kernel keeps
 * the file's rows); a SIMD table starts from this and overrides */
void awq_scalar_fill(awq_kernels *k);

#endif
