/* AVX-512 (F, BW, VL, DQ) kernels; built twice: plain, and with AWQ_VNNI=1 (-mavx512vnni), where the
 * u8 x s8 -> s32 products of the 32-element types use vpdpbusd instead of vpmaddubsw + vpmaddwd, and the K types'
 * scale products vpdpwssd instead of vpmaddwd + vpaddd.
 * Same scheme as avx2.c on 512-bit vectors: two 32-element blocks (or two K chunks) per instruction;
 * the K types unpack each chunk on 256 bits and join two of them (Q6_K unpacks two at once on 512 bits).
 * Dequantization stays scalar. */
#include <immintrin.h>

#include "kernels.h"
#include "scalar.h"

#if defined(AWQ_VNNI) && AWQ_VNNI
#define TABLE_FN awq_kernels_avx512vnni
#define TABLE_NAME "avx512-vnni"
static inline __m512i dot_us512(__m512i u, __m512i s) { return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s); }
#else
#define TABLE_FN awq_kernels_avx512
#define TABLE_NAME "avx512"
static inline __m512i dot_us512(__m512i u, __m512i s) {
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
}
#endif

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

static inline __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

static inline __m512 dpair(float d0, float d1) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(d0)), _mm256_set1_ps(d1), 1);
}

static inline __m256i nibbles32(const uint8_t *p) {
    const __m128i v = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
}

static inline __m256i bits32_x10(const uint8_t *qh4) {
    uint32_t bits;
    memcpy(&bits, qh4, 4);
    /* bit i -> byte i via a mask register */
    return _mm256_maskz_mov_epi8((__mmask32)bits, _mm256_set1_epi8(0x10));
}

static inline __m256i xq32(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* ---- activations ----------------------------------------------------------------------------- */

static inline __m128i round16(const float *x, __m512 id, int32_t *sum) {
    const __m512i i = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x), id),
                                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    *sum = _mm512_reduce_add_epi32(i);
    return _mm512_cvtsepi32_epi8(i);
}

/* max |x|, or NaN if any x is NaN or infinite */
static inline float amax_of(const float *x, int n) {
    const __m512 big = _mm512_set1_ps(AWQ_FLT_MAX);
    __m512 m = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int i = 0; i < n; i += 16) {
        const __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x + i));
        m = _mm512_max_ps(m, a);
        bad |= _mm512_cmp_ps_mask(a, big, _CMP_NLE_UQ);
    }
    return bad ? __builtin_nanf("") : _mm512_reduce_max_ps(m);
}

static void quantize_q8_32(int64_t n, const float *x, void *vy) {
    act_q8_32 *y = vy;
    for (int64_t b = 0; b < n / QK32; b++, x += QK32) {
        const float amax = amax_of(x, 32);
        if (!(amax <= AWQ_FLT_MAX)) { awq_act32_nan(&y[b]); continue; }
        const float d = amax / 127.0f, id = awq_inv_d(d);
        int32_t s0, s1;
        _mm_storeu_si128((__m128i *)y[b].qs, round16(x, _mm512_set1_ps(id), &s0));
        _mm_storeu_si128((__m128i *)(y[b].qs + 16), round16(x + 16, _mm512_set1_ps(id), &s1));
        y[b].d = d;
        y[b].s = s0 + s1;
    }
}

static void quantize_q8_K(int64_t n, const float *x, void *vy) {
    act_q8_K *y = vy;
    for (int64_t b = 0; b < n / QKK; b++, x += QKK) {
        const float amax = amax_of(x, 256);
        if (!(amax <= AWQ_FLT_MAX)) { awq_actK_nan(&y[b]); continue; }
        const float d = amax / 127.0f, id = awq_inv_d(d);
        for (int j = 0; j < 16; j++) {
            int32_t s;
            _mm_storeu_si128((__m128i *)(y[b].qs + 16 * j), round16(x + 16 * j, _mm512_set1_ps(id), &s));
            y[b].bsums[j] = (int16_t)s;
        }
        y[b].d = d;
    }
}

/* ---- 32-element types: two blocks per step; an odd last block goes through the 256-bit half ---- */

/* one generic loop for Q4_1 / Q5_1: Q(b) gives block b's 32 unsigned bytes, DW(b) its weight scale, MW(b) its
 * min (added through the activation sums) */
#define DOT32_LOOP(Q, DW, MW)                                                                            \
    const int64_t nb = n / QK32;                                                                       \
    __m512 acc = _mm512_setzero_ps();                                                                  \
    float bias = 0.0f;                                                                                 \
    int64_t b = 0;                                                                                     \
    for (; b + 1 < nb; b += 2) {                                                                       \
        const float d0 = DW(b) * x[b].d, d1 = DW(b + 1) * x[b + 1].d;                                  \
        const __m512i p = dot_us512(join(Q(b), Q(b + 1)), join(xq32(x[b].qs), xq32(x[b + 1].qs)));     \
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), dpair(d0, d1), acc);                              \
        bias += MW(b) * x[b].d * (float)x[b].s +                                                       \
                MW(b + 1) * x[b + 1].d * (float)x[b + 1].s;                                            \
    }                                                                                                  \
    if (b < nb) {                                                                                      \
        const float d0 = DW(b) * x[b].d;                                                               \
        const __m512i p = dot_us512(join(Q(b), _mm256_setzero_si256()), join(xq32(x[b].qs), _mm256_setzero_si256())); \
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_set1_ps(d0), acc);                         \
        bias += MW(b) * x[b].d * (float)x[b].s;                                                        \
    }                                                                                                  \
    return _mm512_reduce_add_ps(acc) + bias;

/* signed weights ws times activations xv through the unsigned-signed product: |w| u8 times x with w's sign */
static inline __m512i dot_signed512(__m512i ws, __m512i xv) {
    const __m512i sx = _mm512_mask_sub_epi8(xv, _mm512_movepi8_mask(ws), _mm512_setzero_si512(), xv);
    return dot_us512(_mm512_abs_epi8(ws), sx);
}

/* Q4_0 / Q5_0: the offset (8 / 16) subtracted from the unpacked weights, then the sign trick, as in avx2.c: the
 * same integer block sums without the per-block float correction through the activation sums. SQ(b) gives
 * block b's 32 signed weights; |w| <= 16 keeps maddubs' pair sums far from int16 saturation. */
#define DOT32S_LOOP(SQ, DW)                                                                              \
    const int64_t nb = n / QK32;                                                                       \
    __m512 acc = _mm512_setzero_ps();                                                                  \
    int64_t b = 0;                                                                                     \
    for (; b + 1 < nb; b += 2) {                                                                       \
        const __m512i p = dot_signed512(join(SQ(b), SQ(b + 1)), join(xq32(x[b].qs), xq32(x[b + 1].qs))); \
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), dpair(DW(b) * x[b].d, DW(b + 1) * x[b + 1].d), acc); \
    }                                                                                                  \
    if (b < nb) {                                                                                      \
        const __m512i p = dot_signed512(join(SQ(b), _mm256_setzero_si256()),                          \
                                        join(xq32(x[b].qs), _mm256_setzero_si256()));                  \
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_set1_ps(DW(b) * x[b].d), acc);             \
    }                                                                                                  \
    return _mm512_reduce_add_ps(acc);

/* Q5_0's signed weights: nibble + 16 * high bit - 16 = nibble - (high bit clear ? 16 : 0) */
static inline __m256i q5_0_signed(const blk_q5_0 *k) {
    uint32_t qh;
    memcpy(&qh, k->qh, 4);
    const __m256i nib = nibbles32(k->qs);
    return _mm256_mask_sub_epi8(nib, (__mmask32)~qh, nib, _mm256_set1_epi8(16));
}

static float dot_q4_0(int64_t n, const void *vw, const void *vx) {
    const blk_q4_0 *w = vw; const act_q8_32 *x = vx;
#define SQ(b) _mm256_sub_epi8(nibbles32(w[b].qs), _mm256_set1_epi8(8))
#define DW(b) h2f(w[b].d)
    DOT32S_LOOP(SQ, DW)
#undef SQ
#undef DW
}

static float dot_q4_1(int64_t n, const void *vw, const void *vx) {
    const blk_q4_1 *w = vw; const act_q8_32 *x = vx;
#define Q(b) nibbles32(w[b].qs)
#define DW(b) h2f(w[b].d)
#define MW(b) h2f(w[b].m)
    DOT32_LOOP(Q, DW, MW)
#undef Q
#undef DW
#undef MW
}

static float dot_q5_0(int64_t n, const void *vw, const void *vx) {
    const blk_q5_0 *w = vw; const act_q8_32 *x = vx;
#define SQ(b) q5_0_signed(&w[b])
#define DW(b) h2f(w[b].d)
    DOT32S_LOOP(SQ, DW)
#undef SQ
#undef DW
}

static float dot_q5_1(int64_t n, const void *vw, const void *vx) {
    const blk_q5_1 *w = vw; const act_q8_32 *x = vx;
#define Q(b) _mm256_or_si256(nibbles32(w[b].qs), bits32_x10(w[b].qh))
#define DW(b) h2f(w[b].d)
#define MW(b) h2f(w[b].m)
    DOT32_LOOP(Q, DW, MW)
#undef Q
#undef DW
#undef MW
}

static float dot_q8_0(int64_t n, const void *vw, const void *vx) {
    const blk_q8_0 *w = vw; const act_q8_32 *x = vx;
    const int64_t nb = n / QK32;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        const __m512i wv = join(xq32(w[b].qs), xq32(w[b + 1].qs));
        const __m512i xv = join(xq32(x[b].qs), xq32(x[b + 1].qs));
        const __m512i p = dot_signed512(wv, xv); /* |w| times x with w's sign */
        const __m512 d = dpair(h2f(w[b].d) * x[b].d, h2f(w[b + 1].d) * x[b + 1].d);
        if (b & 2) acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), d, acc1);
        else acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), d, acc0);
    }
    if (b < nb) {
        const __m512i wv = join(xq32(w[b].qs), _mm256_setzero_si256());
        const __m512i xv = join(xq32(x[b].qs), _mm256_setzero_si256());
        const __m512i p = dot_signed512(wv, xv);
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_set1_ps(h2f(w[b].d) * x[b].d), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* ---- K types: pair p = chunks 2p, 2p+1 = elements 64p..64p+63, per-16 int8 scales --------------- */

static inline __m512i kpair512(__m512i acc, __m512i q, const int8_t *xq, __m256i sc8x2, int p) {
    const __m256i pick = _mm256_set_epi64x((long long)(0x0101010101010101ULL * (uint64_t)(4 * p + 3)),
                                           (long long)(0x0101010101010101ULL * (uint64_t)(4 * p + 2)),
                                           (long long)(0x0101010101010101ULL * (uint64_t)(4 * p + 1)),
                                           (long long)(0x0101010101010101ULL * (uint64_t)(4 * p)));
    const __m512i sc = _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(sc8x2, pick));
    const __m512i prod = _mm512_maddubs_epi16(q, _mm512_loadu_si512((const void *)(xq + 64 * p)));
#if defined(AWQ_VNNI) && AWQ_VNNI
    return _mm512_dpwssd_epi32(acc, prod, sc); /* the madd and the add in one instruction */
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(prod, sc));
#endif
}

static inline __m512i kpair(__m512i acc, __m256i q0, __m256i q1, const int8_t *xq, __m256i sc8x2, int p) {
    return kpair512(acc, join(q0, q1), xq, sc8x2, p);
}

/* scaled main sums minus off * sum_j sc[j] * bsums[j] (off = 1 << off_shift; none if off_shift < 0) */
static inline __m256 kfinish(__m256 accf, __m512i acc512, const act_q8_K *x, __m128i sc8, int off_shift, float d) {
    __m256i acc = _mm256_add_epi32(_mm512_castsi512_si256(acc512), _mm512_extracti64x4_epi64(acc512, 1));
    if (off_shift >= 0) {
        const __m256i corr = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x->bsums), _mm256_cvtepi8_epi16(sc8));
        acc = _mm256_sub_epi32(acc, _mm256_sll_epi32(corr, _mm_cvtsi32_si128(off_shift)));
    }
    return _mm256_fmadd_ps(_mm256_set1_ps(x->d * d), _mm256_cvtepi32_ps(acc), accf);
}

static inline __m256 kmins(__m256 accm, const act_q8_K *x, __m128i mn8, float dmin) {
    const __m256i m = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x->bsums), _mm256_cvtepu8_epi16(mn8));
    return _mm256_fmadd_ps(_mm256_set1_ps(x->d * dmin), _mm256_cvtepi32_ps(m), accm);
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m128i dup8(const uint32_t w[2]) {
    const __m128i v = _mm_cvtsi64_si128((long long)(((uint64_t)w[1] << 32) | w[0]));
    return _mm_unpacklo_epi8(v, v);
}

static inline __m256i srl16(__m256i v, int s) { return _mm256_srl_epi16(v, _mm_cvtsi32_si128(s)); }

static float dot_q2_K(int64_t n, const void *vw, const void *vx) {
    const blk_q2_K *w = vw; const act_q8_K *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 accf = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QKK; b++) {
        const __m128i s = _mm_loadu_si128((const __m128i *)w[b].scales);
        const __m128i sc8 = _mm_and_si128(s, _mm_set1_epi8(0xF));
        const __m128i mn8 = _mm_and_si128(_mm_srli_epi16(s, 4), _mm_set1_epi8(0xF));
        const __m256i sc8x2 = _mm256_broadcastsi128_si256(sc8);
        __m512i acc = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * h));
            acc = kpair(acc, _mm256_and_si256(v, m3), _mm256_and_si256(srl16(v, 2), m3), x[b].qs, sc8x2, 2 * h);
            acc = kpair(acc, _mm256_and_si256(srl16(v, 4), m3), _mm256_and_si256(srl16(v, 6), m3), x[b].qs, sc8x2, 2 * h + 1);
        }
        accf = kfinish(accf, acc, &x[b], sc8, -1, h2f(w[b].d));
        accm = kmins(accm, &x[b], mn8, h2f(w[b].dmin));
    }
    return hsum256(accf) - hsum256(accm);
}

static float dot_q3_K(int64_t n, const void *vw, const void *vx) {
    const blk_q3_K *w = vw; const act_q8_K *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    __m256 accf = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QKK; b++) {
        uint32_t sw[4];
        awq_q3k_words(w[b].scales, sw);
        const __m128i sc8 = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)sw), _mm_set1_epi8(32));
        const __m256i sc8x2 = _mm256_broadcastsi128_si256(sc8);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)w[b].hmask);
        __m512i acc = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * h));
            __m256i q[4];
            for (int j = 0; j < 4; j++)
                q[j] = _mm256_or_si256(_mm256_and_si256(srl16(v, 2 * j), m3),
                                       _mm256_slli_epi16(_mm256_and_si256(srl16(hm, 4 * h + j), one), 2));
            acc = kpair(acc, q[0], q[1], x[b].qs, sc8x2, 2 * h);
            acc = kpair(acc, q[2], q[3], x[b].qs, sc8x2, 2 * h + 1);
        }
        accf = kfinish(accf, acc, &x[b], sc8, 2, h2f(w[b].d));
    }
    return hsum256(accf);
}

static float dot_q4_K(int64_t n, const void *vw, const void *vx) {
    const blk_q4_K *w = vw; const act_q8_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 accf = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QKK; b++) {
        uint32_t sc[2], mn[2];
        awq_q4k_words(w[b].scales, sc, mn);
        const __m128i sc8 = dup8(sc), mn8 = dup8(mn);
        const __m256i sc8x2 = _mm256_broadcastsi128_si256(sc8);
        __m512i acc = _mm512_setzero_si512();
        for (int p = 0; p < 4; p++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * p));
            acc = kpair(acc, _mm256_and_si256(v, m4), _mm256_and_si256(srl16(v, 4), m4), x[b].qs, sc8x2, p);
        }
        accf = kfinish(accf, acc, &x[b], sc8, -1, h2f(w[b].d));
        accm = kmins(accm, &x[b], mn8, h2f(w[b].dmin));
    }
    return hsum256(accf) - hsum256(accm);
}

static float dot_q5_K(int64_t n, const void *vw, const void *vx) {
    const blk_q5_K *w = vw; const act_q8_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
    __m256 accf = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QKK; b++) {
        uint32_t sc[2], mn[2];
        awq_q4k_words(w[b].scales, sc, mn);
        const __m128i sc8 = dup8(sc), mn8 = dup8(mn);
        const __m256i sc8x2 = _mm256_broadcastsi128_si256(sc8);
        const __m256i qh = _mm256_loadu_si256((const __m256i *)w[b].qh);
        __m512i acc = _mm512_setzero_si512();
        for (int p = 0; p < 4; p++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * p));
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(srl16(qh, 2 * p), one), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(srl16(qh, 2 * p + 1), one), 4);
            acc = kpair(acc, _mm256_or_si256(_mm256_and_si256(v, m4), h0),
                        _mm256_or_si256(_mm256_and_si256(srl16(v, 4), m4), h1), x[b].qs, sc8x2, p);
        }
        accf = kfinish(accf, acc, &x[b], sc8, -1, h2f(w[b].d));
        accm = kmins(accm, &x[b], mn8, h2f(w[b].dmin));
    }
    return hsum256(accf) - hsum256(accm);
}

/* Q6_K on whole 512-bit vectors: half h's 64 ql bytes are chunks 4h, 4h + 1 (low nibbles) and 4h + 2, 4h + 3 (high
 * nibbles) side by side, and its 32 qh bytes, broadcast to both 256-bit halves, give each chunk's two top bits with
 * one mask and one per-half variable shift (chunk c's bits 2c, 2c + 1 moved to bits 4, 5). */
static float dot_q6_K(int64_t n, const void *vw, const void *vx) {
    const blk_q6_K *w = vw; const act_q8_K *x = vx;
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m512i mlo = _mm512_inserti64x4(_mm512_set1_epi8(0x03), _mm256_set1_epi8(0x0C), 1); /* chunks 0, 1 */
    const __m512i mhi = _mm512_inserti64x4(_mm512_set1_epi8(0x30), _mm256_set1_epi8((char)0xC0), 1); /* 2, 3 */
    const __m512i slo = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shi = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    __m256 accf = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QKK; b++) {
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)w[b].scales);
        const __m256i sc8x2 = _mm256_broadcastsi128_si256(sc8);
        __m512i acc = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            const __m512i l = _mm512_loadu_si512((const void *)(w[b].ql + 64 * h));
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h)));
            const __m512i q01 = _mm512_or_si512(_mm512_and_si512(l, m4),
                                                _mm512_sllv_epi16(_mm512_and_si512(qh, mlo), slo));
            const __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                                _mm512_srlv_epi16(_mm512_and_si512(qh, mhi), shi));
            acc = kpair512(acc, q01, x[b].qs, sc8x2, 2 * h);
            acc = kpair512(acc, q23, x[b].qs, sc8x2, 2 * h + 1);
        }
        accf = kfinish(accf, acc, &x[b], sc8, 5, h2f(w[b].d));
    }
    return hsum256(accf);
}

/* ---- float weights ---------------------------------------------------------------------------- */

static float dot_f32(int64_t n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static float dot_f16(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw; const float *x = vx;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 2 * i))), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 2 * i + 32))), _mm512_loadu_ps(x + i + 16), a1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < n; i++) s += h2f(awq_rd16(w + 2 * i)) * x[i];
    return s;
}

const awq_kernels *TABLE_FN(void) {
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
        k.name = TABLE_NAME;
    }
    return &k;
}
