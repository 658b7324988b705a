/* Shared definitions of the CPU kernels: GGUF weight blocks, our 8-bit activation blocks, the per-ISA
 * kernel table and fp16 helpers. Every ISA file (scalar.c, avx2.c, avx512.c, neon.c) fills one awq_kernels. */
#ifndef AWQ_KERNELS_H
#define AWQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ggml type ids (= gguf.GGMLQuantizationType values) */
enum {
    AWQ_F32 = 0, AWQ_F16 = 1, AWQ_Q4_0 = 2, AWQ_Q4_1 = 3, AWQ_Q5_0 = 6, AWQ_Q5_1 = 7, AWQ_Q8_0 = 8,
    AWQ_Q2_K = 10, AWQ_Q3_K = 11, AWQ_Q4_K = 12, AWQ_Q5_K = 13, AWQ_Q6_K = 14, AWQ_NTYPES = 15
};

enum { AWQ_ISA_SCALAR = 0, AWQ_ISA_AVX2 = 1, AWQ_ISA_AVX512 = 2, AWQ_ISA_NEON = 3, AWQ_NISA = 4 };

#define QK32 32
#define QKK 256

/* GGUF weight blocks (byte layout of the file; fp16 kept as raw uint16) */
typedef struct { uint16_t d; uint8_t qs[16]; } blk_q4_0;                               /* 18 bytes */
typedef struct { uint16_t d, m; uint8_t qs[16]; } blk_q4_1;                            /* 20 */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } blk_q5_0;                /* 22 */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } blk_q5_1;             /* 24 */
typedef struct { uint16_t d; int8_t qs[32]; } blk_q8_0;                                /* 34 */
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } blk_q2_K;     /* 84 */
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } blk_q3_K; /* 110 */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } blk_q4_K;   /* 144 */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } blk_q5_K; /* 176 */
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } blk_q6_K; /* 210 */

/* Q4_0 rows interleaved by 8 for the prompt GEMM (awq_pack; not a file format): per block of 32 columns, the
 * 8 rows' fp16 scales, then their packed nibbles in 4-byte groups, qs[32 j + 4 r + k] = row r's qs[4 j + k]
 * (j 0..3, r 0..7, k 0..3). One 32-byte load then holds 4 consecutive elements of each of the 8 rows (low
 * nibbles: elements 4j..4j+3, high: 16+4j..16+4j+3), so one broadcast activation word meets all 8 rows and the
 * 8 row sums land in the 8 lanes of a vector, with no horizontal sums. */
typedef struct { uint16_t d[8]; uint8_t qs[128]; } blk_q4_0x8;                          /* 144 = 8 x 18 */
/* Q5_0 likewise, with the fifth bits regrouped the same way: bit 4r + k of qh[v] = bit 4v + k of row r's qh
 * (v 0..7: the vectors of elements 4v..4v+3, low nibbles for v < 4, high for v >= 4) */
typedef struct { uint16_t d[8]; uint32_t qh[8]; uint8_t qs[128]; } blk_q5_0x8;          /* 176 = 8 x 22 */
/* Q4_1 / Q5_1 likewise, with the 8 rows' fp16 mins after their scales */
typedef struct { uint16_t d[8], m[8]; uint8_t qs[128]; } blk_q4_1x8;                    /* 160 = 8 x 20 */
typedef struct { uint16_t d[8], m[8]; uint32_t qh[8]; uint8_t qs[128]; } blk_q5_1x8;    /* 192 = 8 x 24 */
/* Offsets in those four layouts from their two traits: mins (Q4_1, Q5_1) and fifth bits (Q5_0, Q5_1) */
static inline size_t awq_x8_qh_at(int has_m) { return has_m ? 32 : 16; } /* after the 8 d (and the 8 m) */
static inline size_t awq_x8_qs_at(int has_m, int has_h) { return awq_x8_qh_at(has_m) + (has_h ? 32 : 0); }
static inline size_t awq_x8_bytes(int has_m, int has_h) { return awq_x8_qs_at(has_m, has_h) + 128; }
/* and in a file block of those types: d (and m), then (5-bit types) 4 bytes of qh, then 16 of qs */
static inline size_t awq_blk32_qh_at(int has_m) { return has_m ? 4 : 2; }
static inline size_t awq_blk32_qs_at(int has_m, int has_h) { return awq_blk32_qh_at(has_m) + (has_h ? 4 : 0); }
/* Q2_K and Q3_K rows interleaved by 8 (awq_pack), per super-block of 256 columns, 8 file blocks' bytes each.
 * Every quant vector of 32 bytes holds 4 consecutive elements (16 s + 4 j + k, k = 0..3) of one 16-element
 * sub-block s of each of the 8 rows at byte 4 r + k, so one broadcast 4-byte activation word meets all 8 rows.
 * Per-16 scales (and Q2_K's mins) for 2 sub-blocks x 8 rows in 16 bytes, so that SIMD code builds a row-per-lane
 * scale vector with one byte shuffle: byte 32 a + 16 (r / 4) + 8 h + 2 (r % 4) + i is row r's sub-block
 * 4 a + 2 h + i (awq_x8k_sc_at).
 * blk_q2_Kx8: the 8 d, the 8 dmin, then sm = each row's file scale byte (scale | min << 4) at awq_x8k_sc_at, then
 * qs: quad a (sub-blocks 4 a .. 4 a + 3) in 4 vectors qs[128 a + 32 j ..], bits 2 f, 2 f + 1 of byte 4 r + k =
 * row r's element 16 (4 a + f) + 4 j + k (awq_q2x8_at). */
typedef struct { uint16_t d[8], dmin[8]; uint8_t sm[128]; uint8_t qs[512]; } blk_q2_Kx8;               /* 672 = 8 x 84 */
/* blk_q3_Kx8: the 8 d; sc (96 bytes): each 6-bit scale as the byte c = ((s6 ^ 32) << 2) (as int8: 4 (s6 - 32))
 * at awq_x8k_sc_at, 128 bytes folded into 96: sc[j] (j < 96) = (c[j] & 0xFC) | bits 2 .. 7 of c[96 + j % 32]
 * taken two at a time (j / 32 = 0: bits 6, 7; 1: bits 4, 5; 2: bits 2, 3); then qs: 3-bit values q = low 2 bits |
 * hmask bit << 2 (0..7, the file's q + 4), triple t (sub-blocks 2 t, 2 t + 1) in 3 vectors A, B, C =
 * qs[96 t ..], slot u = 4 i + j (sub-block 2 t + i, elements 4 j .. 4 j + 3): slots 0 .. 5 in bits 0-2 and 4-6 of
 * A, B, C (A low, A high, B low, ...), slot 6 = bits 3 of A, B, C (as value bits 0, 1, 2), slot 7 = bits 7
 * (awq_q3x8_slot). */
typedef struct { uint16_t d[8]; uint8_t sc[96]; uint8_t qs[768]; } blk_q3_Kx8;                        /* 880 = 8 x 110 */
_Static_assert(sizeof(blk_q2_Kx8) == 8 * sizeof(blk_q2_K) && sizeof(blk_q3_Kx8) == 8 * sizeof(blk_q3_K),
               "interleaved K layouts: 8 file blocks' bytes each");
/* byte of row r's sub-block s in blk_q2_Kx8.sm / the unfolded 128 Q3_K scale bytes */
static inline int awq_x8k_sc_at(int r, int s) { return 32 * (s / 4) + 16 * (r / 4) + 8 * ((s / 2) % 2) + 2 * (r % 4) + s % 2; }
/* byte and bit shift of row r's element e in blk_q2_Kx8.qs */
static inline int awq_q2x8_at(int r, int e, int *shift) {
    const int s = e / 16;
    *shift = 2 * (s % 4);
    return 128 * (s / 4) + 32 * ((e % 16) / 4) + 4 * r + e % 4;
}
/* row r's element e of a blk_q3_Kx8 (qs: its 768 bytes): the 3-bit value 0..7 */
static inline int awq_q3x8_get(const uint8_t *qs, int r, int e) {
    const int s = e / 16, j = (e % 16) / 4, u = 4 * (s % 2) + j, at = 96 * (s / 2) + 4 * r + e % 4;
    if (u < 6) return (qs[at + 32 * (u / 2)] >> (4 * (u % 2))) & 7;
    const int bit = u == 6 ? 3 : 7;
    return ((qs[at] >> bit) & 1) | (((qs[at + 32] >> bit) & 1) << 1) | (((qs[at + 64] >> bit) & 1) << 2);
}
/* the unfolded Q3_K scale byte j (0..127) of blk_q3_Kx8.sc; as int8: 4 x (the 6-bit scale - 32) */
static inline uint8_t awq_q3x8_sc(const uint8_t *sc, int j) {
    if (j < 96) return sc[j] & 0xFC;
    const int m = j - 96;
    return (uint8_t)(((sc[m] & 3) << 6) | ((sc[32 + m] & 3) << 4) | ((sc[64 + m] & 3) << 2));
}
_Static_assert(sizeof(blk_q4_0x8) == 144 && sizeof(blk_q4_1x8) == 160 && sizeof(blk_q5_0x8) == 176 &&
               sizeof(blk_q5_1x8) == 192, "interleaved layouts: 8 file blocks' bytes each");

/* Activation blocks (internal, not a file format).
 * q8_32: x ~= d * qs, s = sum(qs); used with the 32-element weight types.
 * q8_K:  x ~= d * qs, bsums[j] = sum(qs[16j .. 16j+15]); used with the K types. */
typedef struct { float d; int32_t s; int8_t qs[32]; } act_q8_32;                     /* 40 */
typedef struct { float d; int16_t bsums[16]; int8_t qs[256]; } act_q8_K;             /* 292 */

/* n: elements of the row; w: one weight row; xq: the quantized activation row (act_q8_32 / act_q8_K),
 * or the float row for F32/F16 weights. */
typedef float (*awq_dot_fn)(int64_t n, const void *w, const void *xq);
/* one weight row against 4 activation rows xq, xq + xstride, ... (GEMM: the row is unpacked once) */
typedef void (*awq_dot4_fn)(int64_t n, const void *w, const void *xq, int64_t xstride, float out[4]);
/* 8 interleaved weight rows (n / 32 blocks of blk_q4_0x8 / blk_q4_1x8 / blk_q5_0x8 / blk_q5_1x8, or n / 256 of
 * blk_q2_Kx8 / blk_q3_Kx8) against nx (1..4)
 * activation rows xq, xq + xstride, ...: y[t * ystride + r] for t < nx, r < 8 */
typedef void (*awq_gemm8_fn)(int64_t n, const void *wp, const void *xq, int64_t xstride, int nx, float *y,
                             int64_t ystride);
/* A SIMD variant's gemm8 table entries gemm8_q4_0 .. gemm8_q5_1, from its own
 * gemm8_nx(n, wp, xq, xstride, y, ystride, nx, kind) (kind 0..3: Q4_0, Q4_1, Q5_0, Q5_1), and gemm8_q2_K / gemm8_q3_K
 * from its gemm8k_nx(..., nx, kind) (kind 2, 3), each with nx made a constant; AWQ_SET_GEMM8(k) puts them in table k. */
#define AWQ_GEMM8_ENTRY(NX_FN, T, KIND)                                                                        \
    static void gemm8_##T(int64_t n, const void *wp, const void *vx, int64_t xs, int nx, float *y, int64_t ys) { \
        switch (nx) {                                                                                          \
        case 4: NX_FN(n, wp, vx, xs, y, ys, 4, KIND); break;                                                   \
        case 3: NX_FN(n, wp, vx, xs, y, ys, 3, KIND); break;                                                   \
        case 2: NX_FN(n, wp, vx, xs, y, ys, 2, KIND); break;                                                   \
        default: NX_FN(n, wp, vx, xs, y, ys, 1, KIND); break;                                                  \
        }                                                                                                      \
    }
#define AWQ_GEMM8_ENTRIES                                                                          \
    AWQ_GEMM8_ENTRY(gemm8_nx, q4_0, 0) AWQ_GEMM8_ENTRY(gemm8_nx, q4_1, 1) AWQ_GEMM8_ENTRY(gemm8_nx, q5_0, 2) \
    AWQ_GEMM8_ENTRY(gemm8_nx, q5_1, 3)
#define AWQ_GEMM8K_ENTRIES AWQ_GEMM8_ENTRY(gemm8k_nx, q2_K, 2) AWQ_GEMM8_ENTRY(gemm8k_nx, q3_K, 3)
#define AWQ_SET_GEMM8(k)                                                                                       \
    do {                                                                                                       \
        (k).gemm8[AWQ_Q4_0] = gemm8_q4_0; (k).gemm8[AWQ_Q4_1] = gemm8_q4_1;                                    \
        (k).gemm8[AWQ_Q5_0] = gemm8_q5_0; (k).gemm8[AWQ_Q5_1] = gemm8_q5_1;                                    \
        (k).gemm8[AWQ_Q2_K] = gemm8_q2_K; (k).gemm8[AWQ_Q3_K] = gemm8_q3_K;                                    \
    } while (0)
/* AWQ_DOTR file rows w, w + row_bytes, ... against one activation row xq (GEMV): out[r] as dot would give
 * (up to the order of float sums); each activation block's load, block sum and scale shared by the rows. Where
 * the table has a dotr_prep for the type, xq is what it wrote (see below), not the quantized row itself. */
#ifndef AWQ_DOTR
#define AWQ_DOTR 4
#endif
typedef void (*awq_dotr_fn)(int64_t n, const void *w, int64_t row_bytes, const void *xq, float out[AWQ_DOTR]);
/* dotr's optional companion: the quantized activation row xq (n elements) rewritten, once per GEMV call, into
 * the order dotr reads (at most awq_dotr_xbytes(n) bytes at out) */
typedef void (*awq_dotr_prep_fn)(int64_t n, const void *xq, void *out);
static inline int64_t awq_dotr_xbytes(int64_t n) { return 2 * n + 64; }
typedef void (*awq_dequant_fn)(int64_t n, const void *w, float *y);
typedef void (*awq_quant_fn)(int64_t n, const float *x, void *y);

typedef struct {
    const char *name;
    awq_quant_fn quantize_q8_32;
    awq_quant_fn quantize_q8_K;
    awq_dot_fn dot[AWQ_NTYPES];        /* NULL: type not supported */
    awq_dot4_fn dot4[AWQ_NTYPES];      /* NULL: GEMM calls dot once per activation row */
    awq_dotr_fn dotr[AWQ_NTYPES];      /* optional; NULL: the GEMV calls dot once per row (awq_gemv_file_rows) */
    awq_dotr_prep_fn dotr_prep[AWQ_NTYPES]; /* optional; NULL: dotr reads the quantized row as dot does */
    awq_gemm8_fn gemm8[AWQ_NTYPES];    /* over awq_pack's interleaved rows; NULL: none (Q4_0/Q4_1/Q5_0/Q5_1/Q2_K/Q3_K) */
    awq_dequant_fn dequant[AWQ_NTYPES];
} awq_kernels;

/* per-ISA tables (only those compiled in exist; see dispatch.c) */
const awq_kernels *awq_kernels_scalar(void);
const awq_kernels *awq_kernels_avx2(void);
const awq_kernels *awq_kernels_avx512(void);
const awq_kernels *awq_kernels_avx512vnni(void);
const awq_kernels *awq_kernels_neon(void);

/* the table chosen at run time (dispatch.c) */
const awq_kernels *awq_current(void);

/* fp16 <-> fp32 by bit manipulation (IEEE half, subnormals and inf/nan included) */
static inline float awq_h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

#define AWQ_FLT_MAX 3.40282347e38f

/* an activation block whose input held NaN or Inf: d = NaN (so every product with it is NaN), zero quants */
static inline void awq_act32_nan(act_q8_32 *y) {
    const uint32_t qnan = 0x7fc00000u;
    memcpy(&y->d, &qnan, 4);
    y->s = 0;
    memset(y->qs, 0, sizeof y->qs);
}

static inline void awq_actK_nan(act_q8_K *y) {
    const uint32_t qnan = 0x7fc00000u;
    memcpy(&y->d, &qnan, 4);
    memset(y->bsums, 0, sizeof y->bsums);
    memset(y->qs, 0, sizeof y->qs);
}

/* 1/d for the activation quantizers; 0 for blocks so small (or NaN) that 1/d would overflow: they quantize
 * to zeros (d is kept, so NaN inputs still give NaN results) */
static inline float awq_inv_d(float d) { return d >= 1e-30f ? 1.0f / d : 0.0f; }

static inline uint16_t awq_rd16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t awq_rd32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* 6-bit scale j and min j of a Q4_K / Q5_K super-block (12 packed bytes) */
static inline void awq_scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63; *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* the 16 signed 6-bit scales of a Q3_K super-block (stored +32) */
static inline void awq_q3k_scales(const uint8_t *s12, int8_t out[16]) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? (s12[j] & 0xF) : (s12[j - 8] >> 4);
        int hi = (s12[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* The same two unpackings on 32-bit words (SIMD variants): Q4_K/Q5_K scales (sc[0..7] as two LE words) and
 * mins (mn[0..7]); Q3_K scales as 16 bytes of 0..63 (still +32). */
static inline void awq_q4k_words(const uint8_t *s12, uint32_t sc[2], uint32_t mn[2]) {
    uint32_t w0, w1, w2;
    memcpy(&w0, s12, 4); memcpy(&w1, s12 + 4, 4); memcpy(&w2, s12 + 8, 4);
    sc[0] = w0 & 0x3f3f3f3fu;
    sc[1] = (w2 & 0x0f0f0f0fu) | (((w0 >> 6) & 0x03030303u) << 4);
    mn[0] = w1 & 0x3f3f3f3fu;
    mn[1] = ((w2 >> 4) & 0x0f0f0f0fu) | (((w1 >> 6) & 0x03030303u) << 4);
}

static inline void awq_q3k_words(const uint8_t *s12, uint32_t out[4]) {
    uint32_t a0, a1, t;
    memcpy(&a0, s12, 4); memcpy(&a1, s12 + 4, 4); memcpy(&t, s12 + 8, 4);
    out[0] = (a0 & 0x0f0f0f0fu) | (((t >> 0) & 0x03030303u) << 4);
    out[1] = (a1 & 0x0f0f0f0fu) | (((t >> 2) & 0x03030303u) << 4);
    out[2] = ((a0 >> 4) & 0x0f0f0f0fu) | (((t >> 4) & 0x03030303u) << 4);
    out[3] = ((a1 >> 4) & 0x0f0f0f0fu) | (((t >> 6) & 0x03030303u) << 4);
}

#endif
