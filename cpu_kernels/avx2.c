/* AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; only called after cpuid says so).
 * Weights are unpacked to unsigned bytes and multiplied with the signed 8-bit activations by
 * maddubs (u8 x s8 -> s16 pairs); offsets (Q4_0's -8, Q3_K's -4, Q6_K's -32) and mins come back through the
 * activations' block sums. K types share one core: 8 chunks of 32 bytes, per-16 int8 scales. */
#include <immintrin.h>
#include <stddef.h>

#include "kernels.h"
#include "scalar.h"

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* Software prefetch of the weight stream, PF_AHEAD bytes ahead of the block being read (every cache line of
 * `bytes` from there). On the dev machine (AMD EPYC VM, one thread) it raised GEMV throughput by 15-45%:
 * the hardware prefetcher alone falls behind these compute-heavy loops. `bytes` is a constant after inlining. */
#ifndef PF_AHEAD
#define PF_AHEAD 4096
#endif
static inline __attribute__((always_inline)) void pf_ahead(const void *p, size_t bytes) {
    if (PF_AHEAD > 0) for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + PF_AHEAD + o, _MM_HINT_T0);
}

/* the same, at p itself (dotr: the next group of rows, the same blocks) */
static inline __attribute__((always_inline)) void pf_group(const void *p, size_t bytes) {
    if (PF_AHEAD > 0) for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T0);
}

/* 16 bytes of packed nibbles -> 32 bytes: low nibbles (elements 0..15), then high nibbles (16..31) */
static inline __m256i nibbles32(const uint8_t *p) {
    /* the 16 bytes in both halves (a load-port broadcast), the upper half shifted right by 4 */
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    const __m256i t = _mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(t, _mm256_set1_epi8(0x0F));
}

/* bit i of the 32-bit word -> byte i = 0x10 or 0 */
static inline __m256i bits32_x10(uint32_t bits) {
    __m256i v = _mm256_set1_epi32((int)bits);
    v = _mm256_shuffle_epi8(v, _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                                 0x0101010101010101LL, 0x0000000000000000LL));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* sum over pairs of u8*s8 -> 8 int32 */
static inline __m256i dot_us(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* the activation rows x_[0..3] at xq, xq + xs, ...: block b of each */
#define X4(T, vx, xs, b) const T *x_[4] = {(const T *)(vx) + (b), (const T *)((const uint8_t *)(vx) + (xs)) + (b), \
    (const T *)((const uint8_t *)(vx) + 2 * (xs)) + (b), (const T *)((const uint8_t *)(vx) + 3 * (xs)) + (b)}

/* ---- activations ----------------------------------------------------------------------------- */

/* 32 floats -> rounded int32 x4 vectors (x * id) */
static inline void round32(const float *x, __m256 id, __m256i out[4]) {
    for (int k = 0; k < 4; k++) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), id);
        out[k] = _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
}

/* 4 x 8 int32 -> 32 int8 in order */
static inline __m256i pack32(const __m256i i[4]) {
    const __m256i a = _mm256_packs_epi32(i[0], i[1]), b = _mm256_packs_epi32(i[2], i[3]);
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* max |x|, or NaN if any x is NaN or infinite */
static inline float amax_of(const float *x, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(AWQ_FLT_MAX);
    __m256 m = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i));
        m = _mm256_max_ps(m, a);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, big, _CMP_NLE_UQ));
    }
    if (_mm256_movemask_ps(bad)) return __builtin_nanf("");
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static void quantize_q8_32(int64_t n, const float *x, void *vy) {
    act_q8_32 *y = vy;
    for (int64_t b = 0; b < n / QK32; b++, x += QK32) {
        const float amax = amax_of(x, 32);
        if (!(amax <= AWQ_FLT_MAX)) { awq_act32_nan(&y[b]); continue; }
        const float d = amax / 127.0f, id = awq_inv_d(d);
        __m256i i[4];
        round32(x, _mm256_set1_ps(id), i);
        _mm256_storeu_si256((__m256i *)y[b].qs, pack32(i));
        y[b].d = d;
        y[b].s = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])));
    }
}

static void quantize_q8_K(int64_t n, const float *x, void *vy) {
    act_q8_K *y = vy;
    for (int64_t b = 0; b < n / QKK; b++, x += QKK) {
        const float amax = amax_of(x, 256);
        if (!(amax <= AWQ_FLT_MAX)) { awq_actK_nan(&y[b]); continue; }
        const float d = amax / 127.0f, id = awq_inv_d(d);
        for (int c = 0; c < 8; c++) {
            __m256i i[4];
            round32(x + 32 * c, _mm256_set1_ps(id), i);
            _mm256_storeu_si256((__m256i *)(y[b].qs + 32 * c), pack32(i));
            y[b].bsums[2 * c] = (int16_t)hsum_epi32(_mm256_add_epi32(i[0], i[1]));
            y[b].bsums[2 * c + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(i[2], i[3]));
        }
        y[b].d = d;
    }
}

/* ---- 32-element types -------------------------------------------------------------------------- */

static inline __m256i q5_32(const uint8_t *qs, const uint8_t *qh4) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    return _mm256_or_si256(nibbles32(qs), bits32_x10(qh));
}

/* Q4_0 / Q5_0 (kind 0 / 2) against 4 activation rows (dot4): the offset (8 / 16) subtracted from the unpacked
 * weights and the sign trick (|w| u8 x sign-adjusted x s8) instead of a block-sum correction, which took a
 * scalar int->float conversion and a scalar dependency chain per block (the GEMV below does it as a vector). */
static inline __attribute__((always_inline)) __m256i w32s(const uint8_t *blk, int kind) {
    if (kind == 0) return _mm256_sub_epi8(nibbles32(((const blk_q4_0 *)(const void *)blk)->qs), _mm256_set1_epi8(8));
    /* Q5_0: nibble + 16 * high bit - 16 = nibble - (high bit clear ? 16 : 0) */
    const blk_q5_0 *k = (const void *)blk;
    uint32_t qh;
    memcpy(&qh, k->qh, 4);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh),
                                    _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                                      0x0101010101010101LL, 0x0000000000000000LL));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_sub_epi8(nibbles32(k->qs), _mm256_andnot_si256(set, _mm256_set1_epi8(16)));
}

/* Q4_0 / Q5_0 (kind 0 / 2) against one activation row: unsigned weights (nibble, and fifth bit as 16), the offset
 * (8 / 16) taken off the 8 int32 lanes of each block's products as the activation block sum (s / 2 s per lane: a
 * broadcast load and one vector subtraction). Against the earlier form (offset subtracted from the weights, sign
 * trick: two more byte ops per block), one thread's weight bytes/s over the adjacent read, mean of 6 medians
 * (3 alternations x 2 shapes, 5 rounds each): Q4_0 0.79 -> 0.89, Q5_0 0.77 -> 0.82 (dev machine, 19:55 UTC
 * 2026-11-27). */
static inline __attribute__((always_inline)) __m256i w32u(const uint8_t *blk, int kind) {
    if (kind == 0) return nibbles32(((const blk_q4_0 *)(const void *)blk)->qs);
    const blk_q5_0 *k = (const void *)blk;
    return q5_32(k->qs, k->qh);
}

static inline __attribute__((always_inline)) __m256 dot_32u_block(const uint8_t *blk, const act_q8_32 *x, int kind,
                                                                   __m256 acc) {
    __m256i p = dot_us(w32u(blk, kind), _mm256_loadu_si256((const __m256i *)x->qs));
    __m256i c = _mm256_set1_epi32(x->s);
    if (kind == 2) c = _mm256_add_epi32(c, c);
    p = _mm256_sub_epi32(p, c);
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(awq_rd16(blk)) * x->d), _mm256_cvtepi32_ps(p), acc);
}

static inline __attribute__((always_inline)) float dot_32u(int64_t n, const void *vw, const void *vx, int kind) {
    const uint8_t *w = vw; const act_q8_32 *x = vx;
    const size_t bs = kind == 0 ? sizeof(blk_q4_0) : sizeof(blk_q5_0);
    const int64_t nb = n / QK32;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        pf_ahead(w + b * bs, 2 * bs);
        acc0 = dot_32u_block(w + b * bs, &x[b], kind, acc0);
        acc1 = dot_32u_block(w + (b + 1) * bs, &x[b + 1], kind, acc1);
    }
    if (b < nb) acc0 = dot_32u_block(w + b * bs, &x[b], kind, acc0);
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

static float dot_q4_0(int64_t n, const void *vw, const void *vx) { return dot_32u(n, vw, vx, 0); }
static float dot_q5_0(int64_t n, const void *vw, const void *vx) { return dot_32u(n, vw, vx, 2); }

/* Q4_1 / Q5_1 (kind 1 / 3): unsigned weights times 4 activation rows (GEMM), unpacked once, the min through the
 * activation block sums */
static inline __attribute__((always_inline)) void dot32m_rows(int64_t n, const void *vw, const void *vx, int64_t xs,
                                                              float *out, const int nx, const int kind) {
    const uint8_t *w = vw;
    const size_t bs = kind == 1 ? sizeof(blk_q4_1) : sizeof(blk_q5_1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float bias[4] = {0, 0, 0, 0};
    for (int64_t b = 0; b < n / QK32; b++) {
        const uint8_t *blk = w + b * bs;
        pf_ahead(blk, bs);
        __m256i q;
        float dw, mw;
        if (kind == 1) { const blk_q4_1 *k = (const void *)blk; q = nibbles32(k->qs); dw = h2f(k->d); mw = h2f(k->m); }
        else { const blk_q5_1 *k = (const void *)blk; q = q5_32(k->qs, k->qh); dw = h2f(k->d); mw = h2f(k->m); }
        X4(act_q8_32, vx, xs, b);
#pragma GCC unroll 4
        for (int t = 0; t < nx; t++) {
            const __m256i p = dot_us(q, _mm256_loadu_si256((const __m256i *)x_[t]->qs));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x_[t]->d), _mm256_cvtepi32_ps(p), acc[t]);
            bias[t] += mw * x_[t]->d * (float)x_[t]->s;
        }
    }
    for (int t = 0; t < nx; t++) out[t] = hsum_ps(acc[t]) + bias[t];
}

/* Q4_1 / Q5_1 against one activation row: per block the fp16 (d, m) pair converted at once and times the
 * activation scale in lanes 0, 1 of one vector; the min times the activation block sum accumulated in lane 1 of
 * a 4-lane vector (the block sum read as lane 1 of the activation block's first 8 bytes {d, s}), not in a
 * scalar chain: Q4_1's adjacent-read fraction, mean of 6 medians (3 alternations x 2 shapes, 5 rounds each),
 * 0.71 -> 0.79 (dev machine, 19:59 UTC 2026-11-27). */
static inline __attribute__((always_inline)) void dot32m_block(const uint8_t *blk, const act_q8_32 *x, int kind,
                                                               __m256 *acc, __m128 *accm) {
    const __m256i q = kind == 1 ? nibbles32(((const blk_q4_1 *)(const void *)blk)->qs)
                                : q5_32(((const blk_q5_1 *)(const void *)blk)->qs, ((const blk_q5_1 *)(const void *)blk)->qh);
    const __m256i p = dot_us(q, _mm256_loadu_si256((const __m256i *)x->qs));
    const __m128 dm = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)awq_rd32(blk))), _mm_set1_ps(x->d));
    const __m128 sf = _mm_and_ps(_mm_cvtepi32_ps(_mm_loadl_epi64((const __m128i *)(const void *)x)),
                                 _mm_castsi128_ps(_mm_setr_epi32(0, -1, 0, 0)));
    *acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm), _mm256_cvtepi32_ps(p), *acc);
    *accm = _mm_fmadd_ps(dm, sf, *accm);
}

static inline __attribute__((always_inline)) float dot32m_1(int64_t n, const void *vw, const void *vx, int kind) {
    const uint8_t *w = vw; const act_q8_32 *x = vx;
    const size_t bs = kind == 1 ? sizeof(blk_q4_1) : sizeof(blk_q5_1);
    const int64_t nb = n / QK32;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m128 m0 = _mm_setzero_ps(), m1 = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        pf_ahead(w + b * bs, 2 * bs);
        dot32m_block(w + b * bs, &x[b], kind, &acc0, &m0);
        dot32m_block(w + (b + 1) * bs, &x[b + 1], kind, &acc1, &m1);
    }
    if (b < nb) dot32m_block(w + b * bs, &x[b], kind, &acc0, &m0);
    m0 = _mm_add_ps(m0, m1);
    return hsum_ps(_mm256_add_ps(acc0, acc1)) + _mm_cvtss_f32(_mm_shuffle_ps(m0, m0, 1));
}

/* the table's entries dot (one activation row) and dot4 (four) from one loop FN(n, w, x, xs, out, nx, kind) */
#define ROW_ENTRIES(T, FN, KIND)                                                                               \
    static float dot_##T(int64_t n, const void *w, const void *x) {                                           \
        float o;                                                                                               \
        FN(n, w, x, 0, &o, 1, KIND);                                                                           \
        return o;                                                                                              \
    }                                                                                                          \
    static void dot4_##T(int64_t n, const void *w, const void *x, int64_t xs, float o[4]) {                   \
        FN(n, w, x, xs, o, 4, KIND);                                                                           \
    }
static float dot_q4_1(int64_t n, const void *w, const void *x) { return dot32m_1(n, w, x, 1); }
static float dot_q5_1(int64_t n, const void *w, const void *x) { return dot32m_1(n, w, x, 3); }
static void dot4_q4_1(int64_t n, const void *w, const void *x, int64_t xs, float o[4]) { dot32m_rows(n, w, x, xs, o, 4, 1); }
static void dot4_q5_1(int64_t n, const void *w, const void *x, int64_t xs, float o[4]) { dot32m_rows(n, w, x, xs, o, 4, 3); }

/* dotr's activation layout (dotr_prep, once per GEMV call), per pair of blocks b, b + 1: the low halves of both
 * blocks' quants [b: 0..15 | b + 1: 0..15], the high halves [16..31 | 16..31], the scales [d_b x4 | d_b+1 x4] and
 * the block-sum term c in the same lanes: Q4_0 / Q5_0 the offset (8 / 16) times the block sum (int32), Q4_1 /
 * Q5_1 d times the block sum (float, for the mins); an odd last block after the pairs as it was (act_q8_32). So
 * dotr loads each of them with one plain load (no lane inserts, broadcasts or permutes per step). */
typedef struct { int8_t lo[32], hi[32]; float d[8]; int32_t c[8]; } xpair_t;
_Static_assert(sizeof(xpair_t) == 128 && sizeof(act_q8_32) <= 64, "dotr_prep: 2 bytes per element + 64");

static inline __attribute__((always_inline)) void dotr_prep_32(int64_t n, const void *vx, void *vout, const int kind) {
    const act_q8_32 *x = vx;
    xpair_t *o = vout;
    const int64_t nb = n / QK32;
    for (int64_t j = 0; j < nb / 2; j++) {
        const act_q8_32 *a = x + 2 * j, *b = a + 1;
        memcpy(o[j].lo, a->qs, 16); memcpy(o[j].lo + 16, b->qs, 16);
        memcpy(o[j].hi, a->qs + 16, 16); memcpy(o[j].hi + 16, b->qs + 16, 16);
        for (int i = 0; i < 4; i++) {
            o[j].d[i] = a->d; o[j].d[4 + i] = b->d;
            if (kind == 0 || kind == 2) {
                o[j].c[i] = (kind == 0 ? 8 : 16) * a->s; o[j].c[4 + i] = (kind == 0 ? 8 : 16) * b->s;
            } else {
                const float fa = a->d * (float)a->s, fb = b->d * (float)b->s;
                memcpy(&o[j].c[i], &fa, 4); memcpy(&o[j].c[4 + i], &fb, 4);
            }
        }
    }
    if (nb % 2) memcpy(o + nb / 2, x + nb - 1, sizeof(act_q8_32));
}

static void dotr_prep_q4_0(int64_t n, const void *x, void *o) { dotr_prep_32(n, x, o, 0); }
static void dotr_prep_q4_1(int64_t n, const void *x, void *o) { dotr_prep_32(n, x, o, 1); }
static void dotr_prep_q5_0(int64_t n, const void *x, void *o) { dotr_prep_32(n, x, o, 2); }
static void dotr_prep_q5_1(int64_t n, const void *x, void *o) { dotr_prep_32(n, x, o, 3); }

/* GEMV over AWQ_DOTR = 4 file rows at once (dotr; kind 0..3: Q4_0, Q4_1, Q5_0, Q5_1), two blocks b, b + 1 per
 * step: one vector holds both blocks' 16 packed bytes (b in the low 128-bit lane, b + 1 in the high one), so
 * one mask and one shift + mask give [b: elements 0..15 | b + 1: 0..15] and [b: 16..31 | b + 1: 16..31]; they
 * meet the activation halves arranged the same way (dotr_prep above, shared by the rows), and one madd
 * leaves block b in int32 lanes 0..3 and b + 1 in lanes 4..7. Q5: the fifth bits of both blocks from one 64-bit
 * broadcast, two byte shuffles. Three hadds turn the 4 rows' madd results into one vector [rows 0..3 of b |
 * rows 0..3 of b + 1], so the offset (Q4_0 8, Q5_0 16: offset x the activation block sums), the int -> float
 * conversion and the scale FMA happen once per 8 block-rows, with the 8 fp16 scales (and Q4_1 / Q5_1 mins)
 * gathered by scalar loads into one vector. int16 sums: 2 maddubs of 2 products each, below
 * 4 * 31 * 127 = 15748. An odd last block goes through the one-row block code. The software prefetch takes
 * the same blocks 2 rows further in each row's stream when the rows of a call are a stride apart
 * (awq_gemv_file_rows: 4 sequential streams, each through a quarter of the range; 1 row ahead read about 0.03
 * less, 3 or 4 rows no better), 4 rows ahead when they are adjacent (row_bytes = the row's own size). One thread's adjacent-read fraction, 11 rounds,
 * in one process against adjacent groups of 4 rows and against one row at a time (22:18 UTC 2026-11-27, dev
 * machine), 11008x4096 / 4096x11008: Q4_0 1.20 / 1.10 (0.82 / 1.03, 0.84 / 0.78), Q4_1 0.96 / 1.02 (0.84 / 1.07,
 * 0.80 / 0.82), Q5_0 1.07 / 1.03 (0.90 / 1.02, 0.75 / 0.74), Q5_1 1.09 / 1.04 (0.93 / 0.97, 0.81 / 0.79). */
static inline __attribute__((always_inline)) void dotr_32(int64_t n, const void *vw, int64_t rb, const void *vx,
                                                          float *out, const int kind) {
    _Static_assert(AWQ_DOTR == 4, "dotr_32 takes 4 rows");
    const uint8_t *w = vw; const xpair_t *xp = vx;
    const int has_m = kind == 1 || kind == 3, has_h = kind >= 2;
    const size_t bs = kind == 0 ? sizeof(blk_q4_0) : kind == 1 ? sizeof(blk_q4_1) : kind == 2 ? sizeof(blk_q5_0)
                                                                                               : sizeof(blk_q5_1);
    const size_t qh_at = awq_blk32_qh_at(has_m), qs_at = awq_blk32_qs_at(has_m, has_h);
    const int64_t nb = n / QK32;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const __m256i bm = _mm256_set1_epi64x((long long)0x8040201008040201ULL), x10 = _mm256_set1_epi8(0x10);
    /* Q5: 32 bytes from b's qh hold b's qh in the low lane's bytes 0..3 and b + 1's in the high lane's bytes
     * bs - 16 .. bs - 13; byte i of each lane <- the qh byte holding bit i of elements 0..15 (lo) / 16..31 (hi)
     * of its block */
    const long long hb = (long long)(bs - 16) * 0x0101010101010101LL;
    const __m256i h_lo = _mm256_setr_epi64x(0, 0x0101010101010101LL, hb, hb + 0x0101010101010101LL);
    const __m256i h_hi = _mm256_setr_epi64x(0x0202020202020202LL, 0x0303030303030303LL, hb + 0x0202020202020202LL,
                                            hb + 0x0303030303030303LL);
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        const uint8_t *p[4];
        for (int r = 0; r < 4; r++) {
            p[r] = w + r * rb + b * bs;
            pf_group(p[r] + (rb == nb * (int64_t)bs ? 4 : 2) * nb * (int64_t)bs, 2 * bs);
        }
        const xpair_t *xj = xp + b / 2;
        const __m256i xlo = _mm256_loadu_si256((const __m256i *)(const void *)xj->lo);
        const __m256i xhi = _mm256_loadu_si256((const __m256i *)(const void *)xj->hi);
        __m256i s[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p[r] + qs_at))),
                                                      _mm_loadu_si128((const __m128i *)(p[r] + bs + qs_at)), 1);
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (has_h) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(p[r] + qh_at));
                const __m256i tl = _mm256_and_si256(_mm256_shuffle_epi8(q, h_lo), bm);
                const __m256i th = _mm256_and_si256(_mm256_shuffle_epi8(q, h_hi), bm);
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi8(tl, bm), x10));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi8(th, bm), x10));
            }
            s[r] = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi)), ones);
        }
        /* [rows 0..3 of b | rows 0..3 of b + 1] */
        __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
        const __m256 dx = _mm256_loadu_ps(xj->d);
        if (!has_m) {
            t = _mm256_sub_epi32(t, _mm256_loadu_si256((const __m256i *)(const void *)xj->c));
            __m128i dh = _mm_cvtsi32_si128(awq_rd16(p[0]));
            dh = _mm_insert_epi16(dh, awq_rd16(p[1]), 1); dh = _mm_insert_epi16(dh, awq_rd16(p[2]), 2);
            dh = _mm_insert_epi16(dh, awq_rd16(p[3]), 3); dh = _mm_insert_epi16(dh, awq_rd16(p[0] + bs), 4);
            dh = _mm_insert_epi16(dh, awq_rd16(p[1] + bs), 5); dh = _mm_insert_epi16(dh, awq_rd16(p[2] + bs), 6);
            dh = _mm_insert_epi16(dh, awq_rd16(p[3] + bs), 7);
            const __m256 dw = _mm256_cvtph_ps(dh);
            acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(t), acc);
        } else {
            /* (d, m) of rows 0, 1 (a) and 2, 3 (c): [d m (row 0, b) d m (row 1, b) | the same of b + 1] */
            __m128i a = _mm_cvtsi32_si128((int)awq_rd32(p[0])), c = _mm_cvtsi32_si128((int)awq_rd32(p[2]));
            a = _mm_insert_epi32(a, (int)awq_rd32(p[1]), 1); c = _mm_insert_epi32(c, (int)awq_rd32(p[3]), 1);
            a = _mm_insert_epi32(a, (int)awq_rd32(p[0] + bs), 2); c = _mm_insert_epi32(c, (int)awq_rd32(p[2] + bs), 2);
            a = _mm_insert_epi32(a, (int)awq_rd32(p[1] + bs), 3); c = _mm_insert_epi32(c, (int)awq_rd32(p[3] + bs), 3);
            const __m256 fa = _mm256_cvtph_ps(a), fc = _mm256_cvtph_ps(c);
            const __m256 dw = _mm256_shuffle_ps(fa, fc, 0x88), mw = _mm256_shuffle_ps(fa, fc, 0xDD);
            acc = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(t), acc);
            /* the min times the activation block sum */
            acc = _mm256_fmadd_ps(mw, _mm256_loadu_ps((const float *)(const void *)xj->c), acc);
        }
    }
    const __m128 o = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    _mm_storeu_ps(out, o);
    if (b < nb) { /* odd block count: the last block row by row */
        const act_q8_32 *x = (const act_q8_32 *)(const void *)(xp + nb / 2) - b; /* x + b: that block */
        for (int r = 0; r < 4; r++) {
            const uint8_t *blk = w + r * rb + b * bs;
            if (!has_m) {
                out[r] += hsum_ps(dot_32u_block(blk, &x[b], kind, _mm256_setzero_ps()));
            } else {
                __m256 a = _mm256_setzero_ps();
                __m128 m = _mm_setzero_ps();
                dot32m_block(blk, &x[b], kind, &a, &m);
                out[r] += hsum_ps(a) + _mm_cvtss_f32(_mm_shuffle_ps(m, m, 1));
            }
        }
    }
}

static void dotr_q4_0(int64_t n, const void *w, int64_t rb, const void *x, float *o) { dotr_32(n, w, rb, x, o, 0); }
static void dotr_q4_1(int64_t n, const void *w, int64_t rb, const void *x, float *o) { dotr_32(n, w, rb, x, o, 1); }
static void dotr_q5_0(int64_t n, const void *w, int64_t rb, const void *x, float *o) { dotr_32(n, w, rb, x, o, 2); }
static void dotr_q5_1(int64_t n, const void *w, int64_t rb, const void *x, float *o) { dotr_32(n, w, rb, x, o, 3); }


static float dot_q8_0(int64_t n, const void *vw, const void *vx) {
    const blk_q8_0 *w = vw; const act_q8_32 *x = vx;
    const int64_t nb = n / QK32;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        pf_ahead(w + b, 2 * sizeof(blk_q8_0));
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)w[b].qs);
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)w[b + 1].qs);
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)x[b + 1].qs);
        /* |w| * (x with w's sign): signed products through the unsigned-signed maddubs */
        const __m256i p0 = dot_us(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0));
        const __m256i p1 = dot_us(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(x1, w1));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[b].d) * x[b].d), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[b + 1].d) * x[b + 1].d), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; b < nb; b++) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)w[b].qs);
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i p0 = dot_us(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[b].d) * x[b].d), _mm256_cvtepi32_ps(p0), acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* ---- K types ------------------------------------------------------------------------------------ */

/* The 16 per-16 scales as int16, broadcast to both 128-bit lanes: a = sc[0..7], b = sc[8..15]; chunk k then
 * needs one in-lane shuffle (words 2k, 2k+1 of a or b) instead of a shuffle and a lane-crossing widening. */
typedef struct { __m256i a, b; } kscale_t;

static inline kscale_t kscales(__m128i sc8) {
    const kscale_t ks = {_mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc8)),
                         _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(sc8, 8)))};
    return ks;
}

/* chunk k's scale vector: sc[2k] in the low 8 int16, sc[2k+1] in the high 8 */
static inline __m256i kscale(kscale_t ks, int k) {
    const int w0 = (2 * k) & 7, w1 = (2 * k + 1) & 7;
    const __m256i ctrl = _mm256_set_m128i(_mm_set1_epi16((short)(((2 * w1 + 1) << 8) | (2 * w1))),
                                          _mm_set1_epi16((short)(((2 * w0 + 1) << 8) | (2 * w0))));
    return _mm256_shuffle_epi8(k < 4 ? ks.a : ks.b, ctrl);
}

/* acc (main sums) minus off * sum_j sc[j] * bsums[j], scaled into accf; mins (16 unsigned bytes, or NULL
 * vector use) into accm */
static inline __m256 kfinish(__m256 accf, __m256i acc, const act_q8_K *x, __m128i sc8, int off_shift,
                             float d) {
    if (off_shift >= 0) {
        const __m256i bs = _mm256_loadu_si256((const __m256i *)x->bsums);
        const __m256i corr = _mm256_madd_epi16(bs, _mm256_cvtepi8_epi16(sc8));
        acc = _mm256_sub_epi32(acc, _mm256_sll_epi32(corr, _mm_cvtsi32_si128(off_shift)));
    }
    return _mm256_fmadd_ps(_mm256_set1_ps(x->d * d), _mm256_cvtepi32_ps(acc), accf);
}

static inline __m256 kmins(__m256 accm, const act_q8_K *x, __m128i mn8, float dmin) {
    const __m256i bs = _mm256_loadu_si256((const __m256i *)x->bsums);
    const __m256i m = _mm256_madd_epi16(bs, _mm256_cvtepu8_epi16(mn8));
    return _mm256_fmadd_ps(_mm256_set1_ps(x->d * dmin), _mm256_cvtepi32_ps(m), accm);
}

/* per-32 scales (8 bytes as two words) -> 16 per-16 bytes */
static inline __m128i dup8(const uint32_t w[2]) {
    const __m128i v = _mm_cvtsi64_si128((long long)(((uint64_t)w[1] << 32) | w[0]));
    return _mm_unpacklo_epi8(v, v);
}

/* the 16 Q3_K scales (signed, -32..31) from their 12 packed bytes, in registers (no store/reload) */
static inline __m128i q3k_scales(const uint8_t *s12) {
    uint64_t a;
    uint32_t t;
    memcpy(&a, s12, 8);
    memcpy(&t, s12 + 8, 4);
    const __m128i v = _mm_cvtsi64_si128((long long)a), m4 = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_unpacklo_epi64(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
    const __m128i hi = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32((int)t), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
}

/* ---- K types, one weight row against 1 (GEMV) or 4 (GEMM) activation rows ------------------------- */

/* kind 2..6 = Q2_K..Q6_K (a constant after inlining) */
static inline __attribute__((always_inline)) size_t kblock_bytes(int kind) {
    return kind == 2 ? sizeof(blk_q2_K) : kind == 3 ? sizeof(blk_q3_K) : kind == 4 ? sizeof(blk_q4_K)
         : kind == 5 ? sizeof(blk_q5_K) : sizeof(blk_q6_K);
}

/* the offset every q carries (Q3_K 4, Q6_K 32) as a shift of the scale-weighted block sums; -1: none */
static inline int koff_shift(int kind) { return kind == 3 ? 2 : kind == 6 ? 5 : -1; }
static inline int khas_min(int kind) { return kind == 2 || kind == 4 || kind == 5; }

/* a super-block's 16 per-16 scales (int8), mins (unsigned bytes; zero without), d and dmin */
typedef struct { __m128i sc8, mn8; float d, dmin; } ksuper_t;

static inline __attribute__((always_inline)) ksuper_t kblock_scales(const uint8_t *blk, int kind) {
    ksuper_t s = {_mm_setzero_si128(), _mm_setzero_si128(), 0.0f, 0.0f};
    if (kind == 2) {
        const blk_q2_K *w = (const void *)blk;
        const __m128i v = _mm_loadu_si128((const __m128i *)w->scales);
        s.sc8 = _mm_and_si128(v, _mm_set1_epi8(0xF));
        s.mn8 = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0xF));
        s.d = h2f(w->d);
        s.dmin = h2f(w->dmin);
    } else if (kind == 3) {
        const blk_q3_K *w = (const void *)blk;
        s.sc8 = q3k_scales(w->scales);
        s.d = h2f(w->d);
    } else if (kind == 4 || kind == 5) { /* both start {d, dmin, scales[12]} */
        const blk_q4_K *w = (const void *)blk;
        uint32_t sc[2], mn[2];
        awq_q4k_words(w->scales, sc, mn);
        s.sc8 = dup8(sc);
        s.mn8 = dup8(mn);
        s.d = h2f(w->d);
        s.dmin = h2f(w->dmin);
    } else {
        const blk_q6_K *w = (const void *)blk;
        s.sc8 = _mm_loadu_si128((const __m128i *)w->scales);
        s.d = h2f(w->d);
    }
    return s;
}

static inline __m256i ld256(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* chunk k (elements 32k..32k+31) of a super-block as 32 unsigned values; k is a constant after unrolling, so
 * the loads that several chunks share fold into one */
static inline __attribute__((always_inline)) __m256i kblock_chunk(const uint8_t *blk, int kind, int k) {
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
    if (kind == 2) { /* chunk 4h + j: bits 2j, 2j+1 of qs[32h ..] */
        const __m256i v = ld256(((const blk_q2_K *)(const void *)blk)->qs + 32 * (k / 4));
        return _mm256_and_si256(k % 4 ? _mm256_srli_epi16(v, 2 * (k % 4)) : v, m3);
    }
    if (kind == 3) { /* low 2 bits as Q2_K, bit k of hmask as 4 (one shift moves it to bit 2 of its byte) */
        const blk_q3_K *w = (const void *)blk;
        const __m256i lo = _mm256_and_si256(_mm256_srl_epi16(ld256(w->qs + 32 * (k / 4)), _mm_cvtsi32_si128(2 * (k % 4))), m3);
        const __m256i h = ld256(w->hmask);
        const __m256i hs = k >= 2 ? _mm256_srl_epi16(h, _mm_cvtsi32_si128(k - 2)) : _mm256_sll_epi16(h, _mm_cvtsi32_si128(2 - k));
        return _mm256_or_si256(lo, _mm256_and_si256(hs, _mm256_set1_epi8(4)));
    }
    if (kind == 4) { /* chunk 2j + i: nibble i of qs[32j ..] */
        const __m256i v = ld256(((const blk_q4_K *)(const void *)blk)->qs + 32 * (k / 2));
        return _mm256_and_si256(k % 2 ? _mm256_srli_epi16(v, 4) : v, m4);
    }
    if (kind == 5) { /* as Q4_K, bit k of qh as 16 */
        const blk_q5_K *w = (const void *)blk;
        const __m256i v = ld256(w->qs + 32 * (k / 2));
        const __m256i h = _mm256_and_si256(_mm256_srl_epi16(ld256(w->qh), _mm_cvtsi32_si128(k)), one);
        return _mm256_or_si256(_mm256_and_si256(k % 2 ? _mm256_srli_epi16(v, 4) : v, m4), _mm256_slli_epi16(h, 4));
    }
    /* Q6_K, chunk 4h + c: nibble c / 2 of ql[64h + 32 (c % 2) ..], bits 2c, 2c+1 of qh[32h ..] as 16 and 32 */
    const blk_q6_K *w = (const void *)blk;
    const int h = k / 4, c = k % 4;
    const __m256i l = ld256(w->ql + 64 * h + 32 * (c % 2)), qh = ld256(w->qh + 32 * h);
    const __m256i lo = _mm256_and_si256(c >= 2 ? _mm256_srli_epi16(l, 4) : l, m4);
    const __m256i hi = _mm256_and_si256(c ? _mm256_srli_epi16(qh, 2 * c) : qh, m3);
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

/* nx (1 or 4) activation rows: per super-block and chunk, u8 x s8 products weighted by the per-16 scales in
 * int32 (the chunk unpacked once for all rows), then the offset / mins through the block sums, in float */
static inline __attribute__((always_inline)) void kdot_rows(int64_t n, const void *vw, const void *vx, int64_t xs,
                                                            float *out, const int nx, const int kind) {
    const uint8_t *w = vw;
    const size_t bs = kblock_bytes(kind);
    __m256 accf[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 accm[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < n / QKK; b++) {
        const uint8_t *blk = w + b * bs;
        pf_ahead(blk, bs);
        X4(act_q8_K, vx, xs, b);
        const ksuper_t s = kblock_scales(blk, kind);
        const kscale_t ks = kscales(s.sc8);
        __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const __m256i q = kblock_chunk(blk, kind, k), sc = kscale(ks, k);
#pragma GCC unroll 4
            for (int t = 0; t < nx; t++) {
                const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(x_[t]->qs + 32 * k)));
                acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(p, sc));
            }
        }
        for (int t = 0; t < nx; t++) {
            accf[t] = kfinish(accf[t], acc[t], x_[t], s.sc8, koff_shift(kind), s.d);
            if (khas_min(kind)) accm[t] = kmins(accm[t], x_[t], s.mn8, s.dmin);
        }
    }
    for (int t = 0; t < nx; t++) out[t] = khas_min(kind) ? hsum_ps(accf[t]) - hsum_ps(accm[t]) : hsum_ps(accf[t]);
}

/* Block b of the 4 file rows a dotr call takes (rb bytes apart: a quarter of the thread's range, or adjacent), each
 * stream prefetched 2 rows ahead (4 when the rows are adjacent) (dotr_k, dotr_k23) */
static inline __attribute__((always_inline)) void dotr4_blocks(const uint8_t *p[4], const uint8_t *w, int64_t rb,
                                                               int64_t b, size_t bs, int64_t nb) {
    for (int r = 0; r < 4; r++) {
        p[r] = w + r * rb + b * bs;
        pf_group(p[r] + (rb == nb * (int64_t)bs ? 4 : 2) * nb * (int64_t)bs, bs);
    }
}

/* One super-block of 4 file rows into acc = [rows 0..3 | rows 0..3] (two partial sums per row): three hadds put the rows'
 * int32 sums ai (and, with mins, the min sums am) side by side, then one int -> float conversion and FMA with the
 * rows' fp16 d (and dmin) at byte d_at of each block p[r], times dx (dotr_k, dotr_k23) */
static inline __attribute__((always_inline)) __m256 dotr4_scale(__m256 acc, const uint8_t *const p[4], size_t d_at,
                                                                __m256 dx, const __m256i ai[4], const __m256i am[4],
                                                                int has_min) {
    const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(ai[0], ai[1]), _mm256_hadd_epi32(ai[2], ai[3]));
    if (has_min) {
        const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6), odd = _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7);
        __m128i dd = _mm_cvtsi32_si128((int)awq_rd32(p[0] + d_at)); /* (d, dmin) -> [d0 m0 d1 m1 | d2 m2 d3 m3] */
        dd = _mm_insert_epi32(dd, (int)awq_rd32(p[1] + d_at), 1);
        dd = _mm_insert_epi32(dd, (int)awq_rd32(p[2] + d_at), 2);
        dd = _mm_insert_epi32(dd, (int)awq_rd32(p[3] + d_at), 3);
        const __m256 f = _mm256_mul_ps(_mm256_cvtph_ps(dd), dx);
        const __m256i tm = _mm256_hadd_epi32(_mm256_hadd_epi32(am[0], am[1]), _mm256_hadd_epi32(am[2], am[3]));
        acc = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(f, even), _mm256_cvtepi32_ps(t), acc);
        return _mm256_fnmadd_ps(_mm256_permutevar8x32_ps(f, odd), _mm256_cvtepi32_ps(tm), acc);
    }
    __m128i dh = _mm_cvtsi32_si128(awq_rd16(p[0] + d_at));
    dh = _mm_insert_epi16(dh, awq_rd16(p[1] + d_at), 1);
    dh = _mm_insert_epi16(dh, awq_rd16(p[2] + d_at), 2);
    dh = _mm_insert_epi16(dh, awq_rd16(p[3] + d_at), 3);
    const __m256 dw = _mm256_cvtph_ps(_mm_unpacklo_epi64(dh, dh));
    return _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(t), acc);
}

/* GEMV over 4 file rows at once (dotr) for Q2_K / Q3_K / Q5_K (kind 2 / 3 / 5): per super-block each row's chunks as in
 * kdot_rows (the activation's 8 vectors and block sums read once for the 4 rows), then three hadds put the 4 rows'
 * int32 sums (and Q2_K's min sums) into one vector [rows 0..3 | rows 0..3] (two partial sums per row), so the int
 * -> float conversion and the scale FMA run once per 4 rows, with the rows' fp16 d (and dmin) gathered into one
 * vector. The software prefetch as in dotr_32. Against one
 * row at a time (kdot_rows), same process, 11 rounds (22:19 UTC, dev machine), 11008x4096 / 4096x11008: Q2_K
 * 0.79 / 0.77 (0.72 / 0.75), Q3_K 0.77 / 0.76 (0.74 / 0.70); with 4 adjacent rows a call it was slower than one
 * row at a time (0.60 / 0.71, 0.59 / 0.72). Q5_K (22:54 UTC, 3 in-process runs of 7-9 rounds, means): 0.92 / 0.92
 * against 0.87 / 0.84 one row at a time. Tried for Q2_K / Q3_K, not kept: the 8 chunks' int16 sums reduced by
 * seven hadds into the 16 sub-block sums, then one madd with the scales (no per-chunk scale shuffle and madd):
 * L1-resident 7.1 against 6.5 ns per super-block row (Q2_K), 9.2 against 9.2 (Q3_K). Q2_K and Q3_K have since moved
 * to dotr_k23 below (fewer vector instructions per super-block row); this one serves Q5_K (its kinds 2 and 3 stay
 * as the reference dotr_k23 was measured against). */
static inline __attribute__((always_inline)) void dotr_k(int64_t n, const void *vw, int64_t rb, const void *vx,
                                                         float *out, const int kind) {
    _Static_assert(AWQ_DOTR == 4, "dotr_k takes 4 rows");
    const uint8_t *w = vw; const act_q8_K *x = vx;
    const size_t bs = kblock_bytes(kind);
    const size_t d_at = kind == 2 ? offsetof(blk_q2_K, d) : kind == 3 ? offsetof(blk_q3_K, d) : offsetof(blk_q5_K, d);
    const int64_t nb = n / QKK;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const act_q8_K *xb = x + b;
        const uint8_t *p[4];
        dotr4_blocks(p, w, rb, b, bs, nb);
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)(const void *)xb->bsums);
        __m256i ai[4], am[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const ksuper_t sc = kblock_scales(p[r], kind);
            const kscale_t ks = kscales(sc.sc8);
            __m256i a = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                const __m256i q = _mm256_maddubs_epi16(kblock_chunk(p[r], kind, k),
                                                       _mm256_loadu_si256((const __m256i *)(const void *)(xb->qs + 32 * k)));
                a = _mm256_add_epi32(a, _mm256_madd_epi16(q, kscale(ks, k)));
                __asm__("" : "+x"(a)); /* a chain: reassociated into a tree of the 4 rows' 32 sums, they spill */
            }
            if (!khas_min(kind)) /* Q3_K's offset 4 through the scale-weighted block sums */
                a = _mm256_sub_epi32(a, _mm256_slli_epi32(_mm256_madd_epi16(bsums, _mm256_cvtepi8_epi16(sc.sc8)), 2));
            else
                am[r] = _mm256_madd_epi16(bsums, _mm256_cvtepu8_epi16(sc.mn8));
            ai[r] = a;
        }
        acc = dotr4_scale(acc, p, d_at, _mm256_set1_ps(xb->d), ai, am, khas_min(kind));
    }
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)));
}

static void dotr_q5_K(int64_t n, const void *w, int64_t rb, const void *x, float *o) { dotr_k(n, w, rb, x, o, 5); }

/* ---- GEMV over 4 file rows of Q2_K / Q3_K (dotr_k23) --------------------------------------------------------
 * Per super-block and row: 8 chunks of 32 elements, each chunk's 2-bit fields taken from its qs vector by a mask
 * (and at most one shift shared by two chunks), so the unsigned weight carries a per-chunk power of two e (1, 4 or
 * 16); the per-16 scales enter through one madd per chunk with int16 scale words, one byte shuffle each from the
 * 16 scale bytes broadcast to both 128-bit lanes (a byte as a word's low byte: unsigned, as its high byte: x 256,
 * signed), with the factor that makes e x (scale factor) the same C for every chunk; C is folded into the float
 * factor (an exact power of two). Per 4 rows as in dotr_k: three hadds put the 4 rows' int32 sums into
 * [rows 0..3 | rows 0..3], one int -> float conversion and FMA.
 * Q2_K (C = 16): fields 0 / 1 as v & 3, (v >> 2) & 3 (e = 1, scale words 16 s), fields 2 / 3 as v & 0x30,
 * (v >> 2) & 0x30 (e = 16, words s); 16 s = s << 4 (no carry). maddubs pair sums below 2 * 48 * 128. Mins:
 * the bytes & 0xF0 (16 m) shuffled to words, one madd with the block sums (dmin / 16 in float).
 * Q3_K (C = 1024): q = low 2 bits | hmask bit << 2 (0..7, the file's q + 4) at bits p .. p + 2, p = 0 (e = 1,
 * words 4 s x 256) or p = 2 (e = 4, words s x 256); the 8 chunks need 2 shifts of each qs vector and 4 of hmask
 * (16-bit shifts: the bits that cross bytes fall outside the masks). Scales: the 16 6-bit u = s + 32 from the 12
 * bytes (variable shifts of broadcast words), s = u - 32, 4 s = (u << 2) ^ 0x80 as int8. The offset 4 through
 * -4 x the block sums (once per super-block for the 4 rows) madd'ed with the 4 s words: the row's int32 sum starts
 * from it. int32 lane sums below 1024 * 32 * 7 * 128 * 32 + 2 * 8192 * 32768.
 * The 32-byte constants are read from k23_tab as memory operands (an asm barrier on its address keeps GCC from
 * rebuilding them from immediates in the loop, which it did under register pressure).
 * Against dotr_k (the previous kernel of all three types, kept for Q5_K), dev machine (AMD EPYC, Zen 3, one thread):
 * L1-resident (4096 columns, 8 rows, 00:50 UTC), ns per super-block row: Q2_K 6.27 -> 5.63, Q3_K 8.91 -> 7.66
 * (vector instructions per 4 rows in the loop 258 -> 229, 393 -> 350); the one-thread fraction of the adjacent read,
 * 11008x4096 / 4096x11008, same process, old and new alternated per round (11 rounds, medians), means of 8 runs
 * 00:26-00:49 UTC 2026-11-28: Q2_K 0.748 -> 0.796 / 0.739 -> 0.769, Q3_K 0.681 -> 0.770 / 0.710 -> 0.792 (the 6
 * runs without other work's interference: Q2_K 0.768 -> 0.821 / 0.756 -> 0.791, Q3_K 0.700 -> 0.796 / 0.729 ->
 * 0.820). Still short of 0.9: the loop is bound by the vector pipes (about 52 / 80 vector ops per super-block row,
 * 5 / 7 per chunk: mask (Q3_K: 2 masks and an or), maddubs, scale shuffle, madd, add). Tried, not kept (L1-resident):
 * the scale bytes worked out in general-purpose registers and stored for the next super-block (slower: the scalar
 * work outgrew the dispatch width; GCC also vectorized it into store-forwarding stalls), two rows interleaved per
 * chunk sharing the activation loads (spills), unpack-based instead of hadd reductions, shifts moved to the
 * multiply pipes (pmulhuw / pmullw), no asm chain on the row sums (all slower or equal). */
#define P8(a, b) a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b
#define B32(v) P8(v, v), P8(v, v)
#define WL(k) {P8(2 * (k), 0x80), P8(2 * (k) + 1, 0x80)}
#define WH(k) {P8(0x80, 2 * (k)), P8(0x80, 2 * (k) + 1)}
enum { K23_M3, K23_M30, K23_M0F, K23_MF0, K23_M0C, K23_M04, K23_M10, K23_M32, K23_M80, K23_MCTRL, K23_HCTRL,
       K23_WL, K23_WH = K23_WL + 8, K23_N = K23_WH + 8 };
static const uint8_t k23_tab[K23_N][32] __attribute__((aligned(32))) = {
    {B32(0x03)}, {B32(0x30)}, {B32(0x0F)}, {B32(0xF0)}, {B32(0x0C)}, {B32(0x04)}, {B32(0x10)}, {B32(0x20)}, {B32(0x80)},
    /* word i of lane l <- byte 8 l + i: low byte (MCTRL), high byte (HCTRL) */
    {0, 0x80, 1, 0x80, 2, 0x80, 3, 0x80, 4, 0x80, 5, 0x80, 6, 0x80, 7, 0x80,
     8, 0x80, 9, 0x80, 10, 0x80, 11, 0x80, 12, 0x80, 13, 0x80, 14, 0x80, 15, 0x80},
    {0x80, 0, 0x80, 1, 0x80, 2, 0x80, 3, 0x80, 4, 0x80, 5, 0x80, 6, 0x80, 7,
     0x80, 8, 0x80, 9, 0x80, 10, 0x80, 11, 0x80, 12, 0x80, 13, 0x80, 14, 0x80, 15},
    /* chunk k's scale words: byte 2k in the low lane, 2k + 1 in the high lane, as low (WL) or high (WH) byte */
    WL(0), WL(1), WL(2), WL(3), WL(4), WL(5), WL(6), WL(7),
    WH(0), WH(1), WH(2), WH(3), WH(4), WH(5), WH(6), WH(7)};
#undef P8
#undef B32
#undef WL
#undef WH

static inline __attribute__((always_inline)) void dotr_k23(int64_t n, const void *vw, int64_t rb, const void *vx,
                                                           float *out, const int kind) {
    _Static_assert(AWQ_DOTR == 4, "dotr_k23 takes 4 rows");
    const uint8_t *w = vw; const act_q8_K *x = vx;
    const size_t bs = kblock_bytes(kind);
    const size_t d_at = kind == 2 ? offsetof(blk_q2_K, d) : offsetof(blk_q3_K, d);
    const __m256i *kc = (const __m256i *)(const void *)k23_tab;
    __asm__("" : "+r"(kc));
#define KC(i) _mm256_load_si256(kc + (i))
    const int64_t nb = n / QKK;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const act_q8_K *xb = x + b;
        const uint8_t *p[4];
        dotr4_blocks(p, w, rb, b, bs, nb);
        const __m256i bsums = _mm256_loadu_si256((const __m256i *)(const void *)xb->bsums);
        __m256i ai[4], am[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m256i a;
            if (kind == 2) {
                const blk_q2_K *q = (const void *)p[r];
                const __m256i V = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)q->scales));
                const __m256i S = _mm256_and_si256(V, KC(K23_M0F)), S16 = _mm256_slli_epi16(S, 4); /* s < 16: no carry */
                am[r] = _mm256_madd_epi16(bsums, _mm256_shuffle_epi8(_mm256_and_si256(V, KC(K23_MF0)), KC(K23_MCTRL)));
                a = _mm256_setzero_si256();
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    const __m256i v = ld256(q->qs + 32 * h), v2 = _mm256_srli_epi16(v, 2);
#pragma GCC unroll 4
                    for (int j = 0; j < 4; j++) {
                        const int k = 4 * h + j;
                        const __m256i u = _mm256_and_si256(j % 2 ? v2 : v, KC(j < 2 ? K23_M3 : K23_M30));
                        const __m256i sc = _mm256_shuffle_epi8(j < 2 ? S16 : S, KC(K23_WL + k));
                        const __m256i pr = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)(const void *)(xb->qs + 32 * k)));
                        a = _mm256_add_epi32(a, _mm256_madd_epi16(pr, sc));
                        __asm__("" : "+x"(a)); /* a chain (see dotr_k) */
                    }
                }
            } else {
                const blk_q3_K *q = (const void *)p[r];
                uint64_t a8;
                uint32_t t4;
                memcpy(&a8, q->scales, 8);
                memcpy(&t4, q->scales + 8, 4);
                const __m256i lo = _mm256_and_si256(_mm256_srlv_epi64(_mm256_set1_epi64x((long long)a8), _mm256_setr_epi64x(0, 4, 0, 4)),
                                                    KC(K23_M0F));
                const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)t4), _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)),
                                                    KC(K23_M3));
                const __m256i U = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
                const __m256i S = _mm256_sub_epi8(U, KC(K23_M32)), S4 = _mm256_xor_si256(_mm256_slli_epi16(U, 2), KC(K23_M80));
                /* -4 x bsums: computed here, GCC hoists it out of the row loop */
                const __m256i nb4 = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(bsums, 2));
                a = _mm256_madd_epi16(nb4, _mm256_shuffle_epi8(S4, KC(K23_HCTRL)));
                const __m256i hm = ld256(q->hmask);
                const __m256i hl2 = _mm256_slli_epi16(hm, 2), hl1 = _mm256_slli_epi16(hm, 1);
                const __m256i hr2 = _mm256_srli_epi16(hm, 2), hr3 = _mm256_srli_epi16(hm, 3);
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    const __m256i v = ld256(q->qs + 32 * h), v2 = _mm256_srli_epi16(v, 2), v4 = _mm256_srli_epi16(v, 4);
#pragma GCC unroll 4
                    for (int j = 0; j < 4; j++) {
                        /* chunk k = 4h + j: low bits at bit 2j of v, hmask bit k; p = 0 for j < 2, else 2 */
                        const int k = 4 * h + j;
                        const __m256i src = j == 0 ? v : j == 3 ? v4 : v2;
                        const __m256i hs = j % 2 == 0 ? (h ? hr2 : hl2) : (h ? hr3 : hl1);
                        const __m256i u = _mm256_or_si256(_mm256_and_si256(src, KC(j < 2 ? K23_M3 : K23_M0C)),
                                                          _mm256_and_si256(hs, KC(j < 2 ? K23_M04 : K23_M10)));
                        const __m256i sc = _mm256_shuffle_epi8(j < 2 ? S4 : S, KC(K23_WH + k));
                        const __m256i pr = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)(const void *)(xb->qs + 32 * k)));
                        a = _mm256_add_epi32(a, _mm256_madd_epi16(pr, sc));
                        __asm__("" : "+x"(a));
                    }
                }
            }
            ai[r] = a;
        }
#undef KC
        acc = dotr4_scale(acc, p, d_at, _mm256_set1_ps(xb->d * (kind == 2 ? 1.0f / 16 : 1.0f / 1024)), ai, am, kind == 2);
    }
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)));
}

static void dotr_q2_K(int64_t n, const void *w, int64_t rb, const void *x, float *o) { dotr_k23(n, w, rb, x, o, 2); }
static void dotr_q3_K(int64_t n, const void *w, int64_t rb, const void *x, float *o) { dotr_k23(n, w, rb, x, o, 3); }

ROW_ENTRIES(q2_K, kdot_rows, 2)
ROW_ENTRIES(q3_K, kdot_rows, 3)
ROW_ENTRIES(q4_K, kdot_rows, 4)
ROW_ENTRIES(q5_K, kdot_rows, 5)
ROW_ENTRIES(q6_K, kdot_rows, 6)

/* ---- GEMM: one weight row against 4 activation rows, unpacked once -------------------------------- */


/* Q4_0 / Q5_0 (kind 0 / 2): the offset (8 / 16) is subtracted from the unpacked weights once per block, and
 * the signed weights meet each activation row through the sign trick (|w| u8 x sign-adjusted x s8), so no
 * per-row block-sum correction is needed. |w| <= 16 and |x| <= 127 keep maddubs' pair sums far from
 * int16 saturation. */
static inline __attribute__((always_inline)) void dot4_32s(int64_t n, const void *vw, const void *vx, int64_t xs,
                                                           float out[4], int kind) {
    const uint8_t *w = vw;
    const size_t bs = kind == 0 ? sizeof(blk_q4_0) : sizeof(blk_q5_0);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < n / QK32; b++) {
        const uint8_t *blk = w + b * bs;
        const float dw = h2f(awq_rd16(blk));
        const __m256i sq = w32s(blk, kind);
        const __m256i aq = _mm256_sign_epi8(sq, sq);
        X4(act_q8_32, vx, xs, b);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            const __m256i p = dot_us(aq, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x_[t]->qs), sq));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x_[t]->d), _mm256_cvtepi32_ps(p), acc[t]);
        }
    }
    for (int t = 0; t < 4; t++) out[t] = hsum_ps(acc[t]);
}

static void dot4_q4_0(int64_t n, const void *w, const void *x, int64_t xs, float o[4]) { dot4_32s(n, w, x, xs, o, 0); }
static void dot4_q5_0(int64_t n, const void *w, const void *x, int64_t xs, float o[4]) { dot4_32s(n, w, x, xs, o, 2); }

static void dot4_q8_0(int64_t n, const void *vw, const void *vx, int64_t xs, float out[4]) {
    const blk_q8_0 *w = vw;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < n / QK32; b++) {
        const __m256i wv = _mm256_loadu_si256((const __m256i *)w[b].qs);
        const __m256i aw = _mm256_sign_epi8(wv, wv);
        const float dw = h2f(w[b].d);
        X4(act_q8_32, vx, xs, b);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            const __m256i p = dot_us(aw, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)x_[t]->qs), wv));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x_[t]->d), _mm256_cvtepi32_ps(p), acc[t]);
        }
    }
    for (int t = 0; t < 4; t++) out[t] = hsum_ps(acc[t]);
}

/* ---- GEMM over interleaved Q4_0 / Q4_1 / Q5_0 / Q5_1 (blk_q4_0x8 ... blk_q5_1x8): 8 weight rows x up to 4
 * activations */

static inline __m256i bcast32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* Per block: 4 loads give the 8 rows' 32 nibbles as 8 vectors of 4 elements per row (lane r = row r); each
 * meets the matching 4 activation bytes broadcast to every lane, so lane r of the int16 sums collects row r.
 * Q4_0 / Q4_1 (kind 0 / 1): eight maddubs results summed in int16 stay below 8 * 2 * 15 * 127 = 30480 < 32767.
 * Q5_0 / Q5_1 (kind 2 / 3): the fifth bits OR'd in from the regrouped qh words; values up to 31, so the low- and
 * high-nibble vectors sum apart (4 * 2 * 31 * 127 = 31496 each). The offset (Q4_0 8, Q5_0 16) comes back as
 * offset * (the activation block's sum), the same for all 8 lanes; the mins (Q4_1, Q5_1) as m * d_x * that sum.
 * nx and kind are constants after inlining. */
static inline __attribute__((always_inline)) void gemm8_nx(int64_t n, const void *wp, const void *vx, int64_t xs,
                                                           float *y, int64_t ys, const int nx, const int kind) {
    const uint8_t *w = wp;
    const int has_m = kind == 1 || kind == 3, has_h = kind >= 2; /* mins (Q4_1, Q5_1), fifth bits (Q5_0, Q5_1) */
    const size_t bs = awq_x8_bytes(has_m, has_h), qh_at = awq_x8_qh_at(has_m);
    const size_t qs_at = awq_x8_qs_at(has_m, has_h);
    const int32_t off = kind == 0 ? 8 : kind == 2 ? 16 : 0;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const act_q8_32 *x[4];
    __m256 acc[4];
    for (int t = 0; t < 4; t++) {
        x[t] = (const act_q8_32 *)((const uint8_t *)vx + (t < nx ? t : 0) * xs);
        acc[t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / QK32; b++) {
        const uint8_t *blk = w + b * bs;
        pf_ahead(blk, bs);
        __m256i slo[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        __m256i shi[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + qs_at + 32 * j));
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (has_h) {
                lo = _mm256_or_si256(lo, bits32_x10(awq_rd32(blk + qh_at + 4 * j)));
                hi = _mm256_or_si256(hi, bits32_x10(awq_rd32(blk + qh_at + 4 * (j + 4))));
            }
#pragma GCC unroll 4
            for (int t = 0; t < nx; t++) {
                const __m256i plo = _mm256_maddubs_epi16(lo, bcast32(x[t][b].qs + 4 * j));
                const __m256i phi = _mm256_maddubs_epi16(hi, bcast32(x[t][b].qs + 16 + 4 * j));
                if (!has_h) {
                    slo[t] = _mm256_add_epi16(slo[t], _mm256_add_epi16(plo, phi));
                } else {
                    slo[t] = _mm256_add_epi16(slo[t], plo);
                    shi[t] = _mm256_add_epi16(shi[t], phi);
                    __asm__("" : "+x"(shi[t]));
                }
                /* keeps each row's sum a chain: reassociated into a tree of all 32 products, the sums spill
                 * (Q4_0, 512 x 1536x576 on the dev machine: 7.7-12.9 -> 5.8 ms) */
                __asm__("" : "+x"(slo[t]));
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        const __m256 mw = has_m ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16))) : dw;
#pragma GCC unroll 4
        for (int t = 0; t < nx; t++) {
            __m256i s = _mm256_madd_epi16(slo[t], ones);
            if (has_h) s = _mm256_add_epi32(s, _mm256_madd_epi16(shi[t], ones));
            if (off) s = _mm256_sub_epi32(s, _mm256_set1_epi32(off * x[t][b].s));
            const __m256 dx = _mm256_set1_ps(x[t][b].d);
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(s), acc[t]);
            /* the min times the block's activation sum */
            if (has_m) acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(mw, dx), _mm256_set1_ps((float)x[t][b].s), acc[t]);
        }
    }
    for (int t = 0; t < nx; t++) _mm256_storeu_ps(y + t * ys, acc[t]);
}

AWQ_GEMM8_ENTRIES

/* ---- GEMM over interleaved Q2_K / Q3_K (blk_q2_Kx8 / blk_q3_Kx8): 8 weight rows x up to 4 activations ---- */

static inline __m256i bcast_i16x2(const int16_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

static inline __m256i ctrl4(int8_t a, int8_t b, int8_t c, int8_t d, int step) {
    return _mm256_setr_epi8(a, b, c, d, (int8_t)(a + step), (int8_t)(b + step), (int8_t)(c + step), (int8_t)(d + step),
                            (int8_t)(a + 2 * step), (int8_t)(b + 2 * step), (int8_t)(c + 2 * step), (int8_t)(d + 2 * step),
                            (int8_t)(a + 3 * step), (int8_t)(b + 3 * step), (int8_t)(c + 3 * step), (int8_t)(d + 3 * step),
                            a, b, c, d, (int8_t)(a + step), (int8_t)(b + step), (int8_t)(c + step), (int8_t)(d + step),
                            (int8_t)(a + 2 * step), (int8_t)(b + 2 * step), (int8_t)(c + 2 * step), (int8_t)(d + 2 * step),
                            (int8_t)(a + 3 * step), (int8_t)(b + 3 * step), (int8_t)(c + 3 * step), (int8_t)(d + 3 * step));
}

/* Per super-block and group of 8 rows: each 32-byte quant vector holds 4 elements of one sub-block of every row
 * (lane pair 2r, 2r+1 of the int16 products = row r); per sub-block the 4 maddubs results (16 elements) sum in
 * int16, then one madd with that sub-block's 8 scales (a byte shuffle of the scale bytes puts row r's scale in
 * lanes 2r and 2r+1) adds them into the row's int32 lane.
 * Q2_K (kind 2): field f of a byte taken by mask only (f = 0, 2 as 0..3, f = 1, 3 as 4 x 0..3, after one
 * shift by 4 for f = 2, 3): the scales of f = 0, 2 are taken x 4 instead, so the int sum is 4 x the true one;
 * int16 sums below 4 * 2 * 12 * 127. Mins: pairs of sub-blocks (bytes unpacked to int16) madd pairs of
 * activation block sums.
 * Q3_K (kind 3): 3-bit values 0..7 (q + 4), 8 slots from 3 vectors (see kernels.h); scales as int8 4 x s
 * (sign-extended by unpacking with their sign bytes); the offset 4 through the scale-weighted block sums.
 * int16 sums below 4 * 2 * 7 * 127.
 * The weight stream is prefetched in slices spread over the super-block's loop (a quarter per Q2_K quad, an
 * eighth per Q3_K triple) rather than all 11 / 14 lines at its start: one thread's weight bytes/s over the adjacent
 * one-thread read, mean of 6 medians (3 alternations x 2 shapes, 5 rounds each), Q2_K 0.90 -> 0.96, Q3_K 0.84 ->
 * 0.95 (dev machine, 19:50 UTC 2026-11-27). */
static inline __attribute__((always_inline)) void gemm8k_nx(int64_t n, const void *wp, const void *vx, int64_t xs,
                                                            float *y, int64_t ys, const int nx, const int kind) {
    const uint8_t *w = wp;
    const size_t bs = kind == 2 ? sizeof(blk_q2_Kx8) : sizeof(blk_q3_Kx8);
    const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(0x0C), m15 = _mm256_set1_epi8(0x0F);
    const __m256i m7 = _mm256_set1_epi8(7), m88 = _mm256_set1_epi8((char)0x88), zero = _mm256_setzero_si256();
    /* Q2_K: row r's scale byte 8h + 2r' + i (r' = r % 4, in r's 128-bit lane) to int16 lanes 2r', 2r'+1 */
    const __m256i sc_ctrl[4] = {ctrl4(0, -128, 0, -128, 2), ctrl4(1, -128, 1, -128, 2), ctrl4(8, -128, 8, -128, 2),
                                ctrl4(9, -128, 9, -128, 2)};
    /* Q3_K: int16 lane 2r' (slot 0) or 2r'+1 (slot 1) of a scale pair vector to both lanes 2r', 2r'+1 */
    const __m256i dup_ctrl[2] = {ctrl4(0, 1, 0, 1, 4), ctrl4(2, 3, 2, 3, 4)};
    const act_q8_K *x[4];
    __m256 acc[4];
    for (int t = 0; t < 4; t++) {
        x[t] = (const act_q8_K *)((const uint8_t *)vx + (t < nx ? t : 0) * xs);
        acc[t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / QKK; b++) {
        const uint8_t *blk = w + b * bs;
        __m256i ai[4], am[4];
        for (int t = 0; t < 4; t++) ai[t] = am[t] = _mm256_setzero_si256();
        if (kind == 2) {
            const blk_q2_Kx8 *k = (const blk_q2_Kx8 *)(const void *)blk;
#pragma GCC unroll 4
            for (int a = 0; a < 4; a++) { /* sub-blocks 4a .. 4a+3 */
                pf_ahead(blk + 168 * a, 168); /* a quarter of the 672 bytes per quad (see above) */
                const __m256i z = ld256(k->sm + 32 * a);
                const __m256i sb = _mm256_and_si256(z, m15);
                const __m256i sb4 = _mm256_and_si256(_mm256_slli_epi16(z, 2), _mm256_set1_epi8(0x3C));
                const __m256i mb = _mm256_and_si256(_mm256_srli_epi16(z, 4), m15);
                const __m256i *q = (const __m256i *)(const void *)(k->qs + 128 * a);
#pragma GCC unroll 4
                for (int f = 0; f < 4; f++) {
                    const __m256i sc = _mm256_shuffle_epi8(f % 2 ? sb : sb4, sc_ctrl[f]);
                    __m256i u[4];
#pragma GCC unroll 4
                    for (int j = 0; j < 4; j++) {
                        const __m256i v = _mm256_loadu_si256(q + j);
                        const __m256i vs = f >= 2 ? _mm256_srli_epi16(v, 4) : v;
                        u[j] = _mm256_and_si256(vs, f % 2 ? m12 : m3);
                    }
#pragma GCC unroll 4
                    for (int t = 0; t < nx; t++) {
                        const int8_t *xq = x[t][b].qs + 64 * a + 16 * f;
                        __m256i s16 = _mm256_maddubs_epi16(u[0], bcast32(xq));
                        s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(u[1], bcast32(xq + 4)));
                        s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(u[2], bcast32(xq + 8)));
                        s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(u[3], bcast32(xq + 12)));
                        ai[t] = _mm256_add_epi32(ai[t], _mm256_madd_epi16(s16, sc));
                        __asm__("" : "+x"(ai[t])); /* a chain, not a tree of all 16 sub-block sums (spills) */
                    }
                }
                const __m256i mlo = _mm256_unpacklo_epi8(mb, zero), mhi = _mm256_unpackhi_epi8(mb, zero);
#pragma GCC unroll 4
                for (int t = 0; t < nx; t++) {
                    const int16_t *bsum = x[t][b].bsums + 4 * a;
                    am[t] = _mm256_add_epi32(am[t], _mm256_add_epi32(_mm256_madd_epi16(mlo, bcast_i16x2(bsum)),
                                                                     _mm256_madd_epi16(mhi, bcast_i16x2(bsum + 2))));
                    __asm__("" : "+x"(am[t]));
                }
            }
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)k->d));
            const __m256 dm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)k->dmin));
#pragma GCC unroll 4
            for (int t = 0; t < nx; t++) {
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(0.25f * x[t][b].d)), _mm256_cvtepi32_ps(ai[t]), acc[t]);
                acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(dm, _mm256_set1_ps(x[t][b].d)), _mm256_cvtepi32_ps(am[t]), acc[t]);
            }
        } else {
            const blk_q3_Kx8 *k = (const blk_q3_Kx8 *)(const void *)blk;
            const __m256i y0 = ld256(k->sc), y1 = ld256(k->sc + 32), y2 = ld256(k->sc + 64), mfc = _mm256_set1_epi8((char)0xFC);
            const __m256i y3 = _mm256_or_si256(
                _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi16(y0, 6), _mm256_set1_epi8((char)0xC0)),
                                _mm256_and_si256(_mm256_slli_epi16(y1, 4), _mm256_set1_epi8(0x30))),
                _mm256_and_si256(_mm256_slli_epi16(y2, 2), m12));
            const __m256i cb[4] = {_mm256_and_si256(y0, mfc), _mm256_and_si256(y1, mfc), _mm256_and_si256(y2, mfc), y3};
#pragma GCC unroll 8
            for (int tr = 0; tr < 8; tr++) { /* sub-blocks 2tr, 2tr+1 */
                pf_ahead(blk + 110 * tr, 110);
                const __m256i c = cb[tr / 2], sg = _mm256_cmpgt_epi8(zero, c);
                const __m256i pr = tr % 2 ? _mm256_unpackhi_epi8(c, sg) : _mm256_unpacklo_epi8(c, sg);
                const __m256i sc0 = _mm256_shuffle_epi8(pr, dup_ctrl[0]), sc1 = _mm256_shuffle_epi8(pr, dup_ctrl[1]);
                const __m256i *q = (const __m256i *)(const void *)(k->qs + 96 * tr);
                const __m256i va = _mm256_loadu_si256(q), vb = _mm256_loadu_si256(q + 1), vc = _mm256_loadu_si256(q + 2);
                const __m256i hb = _mm256_or_si256(
                    _mm256_or_si256(_mm256_srli_epi16(_mm256_and_si256(va, m88), 3), _mm256_srli_epi16(_mm256_and_si256(vb, m88), 2)),
                    _mm256_srli_epi16(_mm256_and_si256(vc, m88), 1));
                const __m256i u0 = _mm256_and_si256(va, m7), u1 = _mm256_and_si256(_mm256_srli_epi16(va, 4), m7);
                const __m256i u2 = _mm256_and_si256(vb, m7), u3 = _mm256_and_si256(_mm256_srli_epi16(vb, 4), m7);
                const __m256i u4 = _mm256_and_si256(vc, m7), u5 = _mm256_and_si256(_mm256_srli_epi16(vc, 4), m7);
                const __m256i u6 = _mm256_and_si256(hb, m7), u7 = _mm256_and_si256(_mm256_srli_epi16(hb, 4), m7);
#pragma GCC unroll 4
                for (int t = 0; t < nx; t++) {
                    const int8_t *xq = x[t][b].qs + 32 * tr;
                    __m256i s0 = _mm256_maddubs_epi16(u0, bcast32(xq));
                    s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(u1, bcast32(xq + 4)));
                    s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(u2, bcast32(xq + 8)));
                    s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(u3, bcast32(xq + 12)));
                    __m256i s1 = _mm256_maddubs_epi16(u4, bcast32(xq + 16));
                    s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(u5, bcast32(xq + 20)));
                    s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(u6, bcast32(xq + 24)));
                    s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(u7, bcast32(xq + 28)));
                    ai[t] = _mm256_add_epi32(ai[t], _mm256_add_epi32(_mm256_madd_epi16(s0, sc0), _mm256_madd_epi16(s1, sc1)));
                    am[t] = _mm256_add_epi32(am[t], _mm256_madd_epi16(pr, bcast_i16x2(x[t][b].bsums + 2 * tr)));
                    __asm__("" : "+x"(ai[t]), "+x"(am[t]));
                }
            }
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)k->d));
#pragma GCC unroll 4
            for (int t = 0; t < nx; t++) {
                const __m256i s = _mm256_sub_epi32(ai[t], _mm256_slli_epi32(am[t], 2));
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(0.25f * x[t][b].d)), _mm256_cvtepi32_ps(s), acc[t]);
            }
        }
    }
    for (int t = 0; t < nx; t++) _mm256_storeu_ps(y + t * ys, acc[t]);
}

AWQ_GEMM8K_ENTRIES

/* ---- float weights ---------------------------------------------------------------------------- */

static float dot_f32(int64_t n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum_ps(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static float dot_f16(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw; const float *x = vx;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * i))), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + 2 * i + 16))), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum_ps(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += h2f(awq_rd16(w + 2 * i)) * x[i];
    return s;
}

const awq_kernels *awq_kernels_avx2(void) {
    static awq_kernels k;
    if (!k.name) {
        awq_scalar_fill(&k); /* dequantization stays scalar */
        k.quantize_q8_32 = quantize_q8_32;
        k.quantize_q8_K = quantize_q8_K;
        k.dot[AWQ_F32] = dot_f32; k.dot[AWQ_F16] = dot_f16;
        k.dot[AWQ_Q4_0] = dot_q4_0; k.dot[AWQ_Q4_1] = dot_q4_1; k.dot[AWQ_Q5_0] = dot_q5_0;
        k.dot[AWQ_Q5_1] = dot_q5_1; k.dot[AWQ_Q8_0] = dot_q8_0;
        k.dot[AWQ_Q2_K] = dot_q2_K; k.dot[AWQ_Q3_K] = dot_q3_K; k.dot[AWQ_Q4_K] = dot_q4_K;
        k.dot[AWQ_Q5_K] = dot_q5_K; k.dot[AWQ_Q6_K] = dot_q6_K;
        k.dot4[AWQ_Q4_0] = dot4_q4_0; k.dot4[AWQ_Q4_1] = dot4_q4_1; k.dot4[AWQ_Q5_0] = dot4_q5_0;
        k.dot4[AWQ_Q5_1] = dot4_q5_1; k.dot4[AWQ_Q8_0] = dot4_q8_0;
        k.dot4[AWQ_Q2_K] = dot4_q2_K; k.dot4[AWQ_Q3_K] = dot4_q3_K; k.dot4[AWQ_Q4_K] = dot4_q4_K;
        k.dot4[AWQ_Q5_K] = dot4_q5_K; k.dot4[AWQ_Q6_K] = dot4_q6_K;
        k.dotr[AWQ_Q4_0] = dotr_q4_0; k.dotr[AWQ_Q4_1] = dotr_q4_1; k.dotr[AWQ_Q5_0] = dotr_q5_0;
        k.dotr[AWQ_Q5_1] = dotr_q5_1;
        k.dotr[AWQ_Q2_K] = dotr_q2_K; k.dotr[AWQ_Q3_K] = dotr_q3_K; k.dotr[AWQ_Q5_K] = dotr_q5_K;
        k.dotr_prep[AWQ_Q4_0] = dotr_prep_q4_0; k.dotr_prep[AWQ_Q4_1] = dotr_prep_q4_1;
        k.dotr_prep[AWQ_Q5_0] = dotr_prep_q5_0; k.dotr_prep[AWQ_Q5_1] = dotr_prep_q5_1;
        AWQ_SET_GEMM8(k);
        k.name = "avx2";
    }
    return &k;
}
