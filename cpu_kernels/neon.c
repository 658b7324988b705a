/* NEON kernels for aarch64 (baseline Armv8-A: every aarch64 CPU has them). 16-byte products use sdot
 * (vdotq_s32) when the compiler targets the dot-product extension, else vmull_s8/vmlal_s8 + pairwise adds.
 * Same scheme as avx2.c: unsigned weight values, offsets and mins through the activation block sums, except
 * Q4_0 / Q5_0, whose offsets are subtracted from the weights (signed products need no sign trick here). */
#include <arm_neon.h>
#include <stddef.h>

#include "kernels.h"
#include "scalar.h"

/* sum of 16 s8*s8 products in 4 int32 lanes (weights here are < 64 in magnitude or Q8_0's int8) */
static inline int32x4_t dot16(int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(vdupq_n_s32(0), a, b);
#else
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_s8(p, vget_high_s8(a), vget_high_s8(b)); /* |sum of 2| <= 2 * 128 * 127 fits int16 */
    return vpaddlq_s16(p);
#endif
}

static inline float h2f(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* ---- activations ------------------------------------------------------------------------------- */

/* max |x|, or NaN if any x is NaN or infinite */
static inline float amax_of(const float *x, int n) {
    const float32x4_t big = vdupq_n_f32(AWQ_FLT_MAX);
    float32x4_t m = vdupq_n_f32(0.0f);
    uint32x4_t ok = vdupq_n_u32(0xFFFFFFFFu);
    for (int i = 0; i < n; i += 4) {
        const float32x4_t a = vabsq_f32(vld1q_f32(x + i));
        m = vmaxq_f32(m, a);
        ok = vandq_u32(ok, vcleq_f32(a, big));
    }
    return vminvq_u32(ok) ? vmaxvq_f32(m) : __builtin_nanf("");
}

/* 16 floats * id, rounded half to even, to int8; returns their sum */
static inline int32_t round16(const float *x, float id, int8_t *q) {
    const float32x4_t vid = vdupq_n_f32(id);
    int32x4_t i0 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x), vid));
    int32x4_t i1 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 4), vid));
    int32x4_t i2 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 8), vid));
    int32x4_t i3 = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 12), vid));
    const int16x8_t a = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1));
    const int16x8_t b = vcombine_s16(vqmovn_s32(i2), vqmovn_s32(i3));
    vst1q_s8(q, vcombine_s8(vqmovn_s16(a), vqmovn_s16(b)));
    return vaddvq_s32(vaddq_s32(vaddq_s32(i0, i1), vaddq_s32(i2, i3)));
}

static void quantize_q8_32(int64_t n, const float *x, void *vy) {
    act_q8_32 *y = vy;
    for (int64_t b = 0; b < n / QK32; b++, x += QK32) {
        const float amax = amax_of(x, 32);
        if (!(amax <= AWQ_FLT_MAX)) { awq_act32_nan(&y[b]); continue; }
        const float d = amax / 127.0f, id = awq_inv_d(d);
        y[b].s = round16(x, id, y[b].qs) + round16(x + 16, id, y[b].qs + 16);
        y[b].d = d;
    }
}

static void quantize_q8_K(int64_t n, const float *x, void *vy) {
    act_q8_K *y = vy;
    for (int64_t b = 0; b < n / QKK; b++, x += QKK) {
        const float amax = amax_of(x, 256);
        if (!(amax <= AWQ_FLT_MAX)) { awq_actK_nan(&y[b]); continue; }
        const float d = amax / 127.0f, id = awq_inv_d(d);
        for (int j = 0; j < 16; j++) y[b].bsums[j] = (int16_t)round16(x + 16 * j, id, y[b].qs + 16 * j);
        y[b].d = d;
    }
}

/* ---- 32-element types ------------------------------------------------------------------------ */

/* packed nibbles -> low (elements 0..15) and high (16..31) */
static inline void nibbles(const uint8_t *p, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t v = vld1q_u8(p);
    *lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
    *hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
}

/* bits 0..15 of qh -> 16 bytes of 0x10 or 0 */
static inline int8x16_t bits16_x10(uint32_t bits) {
    static const uint8_t sel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t v = vcombine_u8(vdup_n_u8((uint8_t)bits), vdup_n_u8((uint8_t)(bits >> 8)));
    return vreinterpretq_s8_u8(vandq_u8(vtstq_u8(v, vld1q_u8(sel)), vdupq_n_u8(0x10)));
}

static inline int32_t dot32(int8x16_t lo, int8x16_t hi, const int8_t *x) {
    return vaddvq_s32(vaddq_s32(dot16(lo, vld1q_s8(x)), dot16(hi, vld1q_s8(x + 16))));
}

/* Q4_0 / Q5_0: the offset (8 / 16) is subtracted from the unpacked weights, which NEON multiplies as signed
 * bytes directly (the x86 files need the sign trick for that); the integer block sums are those of the
 * block-sum correction it replaces, without its scalar multiply-subtract per block. */
static float dot_q4_0(int64_t n, const void *vw, const void *vx) {
    const blk_q4_0 *w = vw; const act_q8_32 *x = vx;
    const int8x16_t eight = vdupq_n_s8(8);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / QK32; b++) {
        int8x16_t lo, hi;
        nibbles(w[b].qs, &lo, &hi);
        acc += h2f(w[b].d) * x[b].d * (float)dot32(vsubq_s8(lo, eight), vsubq_s8(hi, eight), x[b].qs);
    }
    return acc;
}

static float dot_q4_1(int64_t n, const void *vw, const void *vx) {
    const blk_q4_1 *w = vw; const act_q8_32 *x = vx;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / QK32; b++) {
        int8x16_t lo, hi;
        nibbles(w[b].qs, &lo, &hi);
        acc += x[b].d * (h2f(w[b].d) * (float)dot32(lo, hi, x[b].qs) + h2f(w[b].m) * (float)x[b].s);
    }
    return acc;
}

static inline void q5(const uint8_t *qs, const uint8_t *qh4, int8x16_t *lo, int8x16_t *hi) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    nibbles(qs, lo, hi);
    *lo = vorrq_s8(*lo, bits16_x10(qh));
    *hi = vorrq_s8(*hi, bits16_x10(qh >> 16));
}

static float dot_q5_0(int64_t n, const void *vw, const void *vx) {
    const blk_q5_0 *w = vw; const act_q8_32 *x = vx;
    const int8x16_t sixteen = vdupq_n_s8(16);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / QK32; b++) {
        int8x16_t lo, hi;
        q5(w[b].qs, w[b].qh, &lo, &hi);
        acc += h2f(w[b].d) * x[b].d * (float)dot32(vsubq_s8(lo, sixteen), vsubq_s8(hi, sixteen), x[b].qs);
    }
    return acc;
}

static float dot_q5_1(int64_t n, const void *vw, const void *vx) {
    const blk_q5_1 *w = vw; const act_q8_32 *x = vx;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / QK32; b++) {
        int8x16_t lo, hi;
        q5(w[b].qs, w[b].qh, &lo, &hi);
        acc += x[b].d * (h2f(w[b].d) * (float)dot32(lo, hi, x[b].qs) + h2f(w[b].m) * (float)x[b].s);
    }
    return acc;
}

static float dot_q8_0(int64_t n, const void *vw, const void *vx) {
    const blk_q8_0 *w = vw; const act_q8_32 *x = vx;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / QK32; b++)
        acc += h2f(w[b].d) * x[b].d * (float)dot32(vld1q_s8(w[b].qs), vld1q_s8(w[b].qs + 16), x[b].qs);
    return acc;
}

/* ---- K types: q[16] vectors of 16 unsigned values (sub-block j = elements 16j..16j+15) --------- */

static inline float kfinish(const int8x16_t q[16], const int16_t sc[16], const int16_t *mn, int off,
                            const act_q8_K *x, float d, float dmin) {
    int32x4_t acc = vdupq_n_s32(0);
    int32_t corr = 0, mins = 0;
    for (int j = 0; j < 16; j++) {
        acc = vmlaq_n_s32(acc, dot16(q[j], vld1q_s8(x->qs + 16 * j)), sc[j]);
        corr += sc[j] * x->bsums[j];
        if (mn) mins += mn[j] * x->bsums[j];
    }
    return x->d * (d * (float)(vaddvq_s32(acc) - off * corr) - dmin * (float)mins);
}

static float dot_q2_K(int64_t n, const void *vw, const void *vx) {
    const blk_q2_K *w = vw; const act_q8_K *x = vx;
    const uint8x16_t m3 = vdupq_n_u8(3);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / QKK; b++) {
        int8x16_t q[16];
        int16_t sc[16], mn[16];
        for (int j = 0; j < 16; j++) { sc[j] = w[b].scales[j] & 0xF; mn[j] = w[b].scales[j] >> 4; }
        for (int h = 0; h < 2; h++)
            for (int half = 0; half < 2; half++) {
                const uint8x16_t v = vld1q_u8(w[b].qs + 32 * h + 16 * half);
                q[8 * h + 0 + half] = vreinterpretq_s8_u8(vandq_u8(v, m3));
                q[8 * h + 2 + half] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 2), m3));
                q[8 * h + 4 + half] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(v, 4), m3));
                q[8 * h + 6 + half] = vreinterpretq_s8_u8(vshrq_n_u8(v, 6));
            }
        acc += kfinish(q, sc, mn, 0, &x[b], h2f(w[b].d), h2f(w[b].dmin));
    }
    return acc;
}

static float dot_q3_K(int64_t n, const void *vw, const void *vx) {
    const blk_q3_K *w = vw; const act_q8_K *x = vx;
    const uint8x16_t m3 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / QKK; b++) {
        int8x16_t q[16];
        int8_t s8[16];
        int16_t sc[16];
        awq_q3k_scales(w[b].scales, s8);
        for (int j = 0; j < 16; j++) sc[j] = s8[j];
        for (int half = 0; half < 2; half++) {
            const uint8x16_t hm = vld1q_u8(w[b].hmask + 16 * half);
            for (int h = 0; h < 2; h++) {
                const uint8x16_t v = vld1q_u8(w[b].qs + 32 * h + 16 * half);
                for (int j = 0; j < 4; j++) {
                    const uint8x16_t lo = vandq_u8(vshlq_u8(v, vdupq_n_s8((int8_t)(-2 * j))), m3);
                    const uint8x16_t hb = vandq_u8(vshlq_u8(hm, vdupq_n_s8((int8_t)(-(4 * h + j)))), one);
                    q[8 * h + 2 * j + half] = vreinterpretq_s8_u8(vorrq_u8(lo, vshlq_n_u8(hb, 2)));
                }
            }
        }
        acc += kfinish(q, sc, 0, 4, &x[b], h2f(w[b].d), 0.0f);
    }
    return acc;
}

static inline void k4_scales(const uint8_t *s12, int16_t sc[16], int16_t mn[16]) {
    for (int j = 0; j < 8; j++) {
        int s, m;
        awq_scale_min_k4(j, s12, &s, &m);
        sc[2 * j] = sc[2 * j + 1] = (int16_t)s;
        mn[2 * j] = mn[2 * j + 1] = (int16_t)m;
    }
}

static float dot_q4_K(int64_t n, const void *vw, const void *vx) {
    const blk_q4_K *w = vw; const act_q8_K *x = vx;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / QKK; b++) {
        int8x16_t q[16];
        int16_t sc[16], mn[16];
        k4_scales(w[b].scales, sc, mn);
        for (int j = 0; j < 4; j++)
            for (int half = 0; half < 2; half++)
                nibbles(w[b].qs + 32 * j + 16 * half, &q[4 * j + half], &q[4 * j + 2 + half]);
        acc += kfinish(q, sc, mn, 0, &x[b], h2f(w[b].d), h2f(w[b].dmin));
    }
    return acc;
}

static float dot_q5_K(int64_t n, const void *vw, const void *vx) {
    const blk_q5_K *w = vw; const act_q8_K *x = vx;
    const uint8x16_t one = vdupq_n_u8(1);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / QKK; b++) {
        int8x16_t q[16];
        int16_t sc[16], mn[16];
        k4_scales(w[b].scales, sc, mn);
        for (int half = 0; half < 2; half++) {
            const uint8x16_t qh = vld1q_u8(w[b].qh + 16 * half);
            for (int j = 0; j < 4; j++) {
                int8x16_t lo, hi;
                nibbles(w[b].qs + 32 * j + 16 * half, &lo, &hi);
                const uint8x16_t h0 = vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)(-2 * j))), one);
                const uint8x16_t h1 = vandq_u8(vshlq_u8(qh, vdupq_n_s8((int8_t)(-2 * j - 1))), one);
                q[4 * j + half] = vorrq_s8(lo, vreinterpretq_s8_u8(vshlq_n_u8(h0, 4)));
                q[4 * j + 2 + half] = vorrq_s8(hi, vreinterpretq_s8_u8(vshlq_n_u8(h1, 4)));
            }
        }
        acc += kfinish(q, sc, mn, 0, &x[b], h2f(w[b].d), h2f(w[b].dmin));
    }
    return acc;
}

static float dot_q6_K(int64_t n, const void *vw, const void *vx) {
    const blk_q6_K *w = vw; const act_q8_K *x = vx;
    const uint8x16_t m4 = vdupq_n_u8(0xF), m3 = vdupq_n_u8(3);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / QKK; b++) {
        int8x16_t q[16];
        int16_t sc[16];
        for (int j = 0; j < 16; j++) sc[j] = w[b].scales[j];
        for (int h = 0; h < 2; h++)
            for (int half = 0; half < 2; half++) {
                const uint8x16_t l0 = vld1q_u8(w[b].ql + 64 * h + 16 * half);
                const uint8x16_t l1 = vld1q_u8(w[b].ql + 64 * h + 32 + 16 * half);
                const uint8x16_t qh = vld1q_u8(w[b].qh + 32 * h + 16 * half);
                const uint8x16_t h0 = vshlq_n_u8(vandq_u8(qh, m3), 4);
                const uint8x16_t h1 = vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), m3), 4);
                const uint8x16_t h2 = vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), m3), 4);
                const uint8x16_t h3 = vshlq_n_u8(vshrq_n_u8(qh, 6), 4);
                q[8 * h + 0 + half] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l0, m4), h0));
                q[8 * h + 2 + half] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l1, m4), h1));
                q[8 * h + 4 + half] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l0, 4), h2));
                q[8 * h + 6 + half] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l1, 4), h3));
            }
        acc += kfinish(q, sc, 0, 32, &x[b], h2f(w[b].d), 0.0f);
    }
    return acc;
}

/* ---- GEMM over interleaved Q4_0 / Q5_0 rows (blk_q4_0x8 / blk_q5_0x8): 8 rows x up to 4 activations ---- */

/* acc + per 32-bit lane the sum of 4 s8 x s8 products (lane r: row r of a 4-row half): sdot, or widening
 * products and two pairwise adds */
static inline int32x4_t dot4x4(int32x4_t acc, int8x16_t w, int8x16_t xb) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, w, xb);
#else
    const int16x8_t lo = vmull_s8(vget_low_s8(w), vget_low_s8(xb)), hi = vmull_s8(vget_high_s8(w), vget_high_s8(xb));
    return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
#endif
}

static inline int8x16_t bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

/* Each 16-byte load holds 4 elements of each of 4 rows (a half of the 8-row group); with the offset subtracted
 * they are signed and one broadcast 4-byte activation word meets all 4 rows, the row sums landing in the lanes.
 * kind 0: Q4_0, 1: Q4_1, 2: Q5_0, 3: Q5_1 (fifth bits from the regrouped qh words: bits 16h .. 16h+15 for
 * half h; Q4_1 / Q5_1 unsigned, their mins times the activation block sum added in float). */
static inline __attribute__((always_inline)) void gemm8_nx(int64_t n, const void *wp, const void *vx, int64_t xs,
                                                           float *y, int64_t ys, const int nx, const int kind) {
    const uint8_t *w = wp;
    const int has_m = kind == 1 || kind == 3, has_h = kind >= 2; /* mins (Q4_1, Q5_1), fifth bits (Q5_0, Q5_1) */
    const size_t bs = awq_x8_bytes(has_m, has_h), qh_at = awq_x8_qh_at(has_m);
    const size_t qs_at = awq_x8_qs_at(has_m, has_h);
    const int8x16_t off = vdupq_n_s8(kind == 0 ? 8 : kind == 2 ? 16 : 0);
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const act_q8_32 *x[4];
    float32x4_t acc[4][2];
    for (int t = 0; t < 4; t++) {
        x[t] = (const act_q8_32 *)((const uint8_t *)vx + (t < nx ? t : 0) * xs);
        acc[t][0] = acc[t][1] = vdupq_n_f32(0.0f);
    }
    for (int64_t b = 0; b < n / QK32; b++) {
        const uint8_t *blk = w + b * bs;
        int32x4_t s[4][2];
        for (int t = 0; t < 4; t++) s[t][0] = s[t][1] = vdupq_n_s32(0);
        for (int j = 0; j < 4; j++)
            for (int h = 0; h < 2; h++) {
                const uint8x16_t v = vld1q_u8(blk + qs_at + 32 * j + 16 * h);
                int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(v, m4)), hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
                if (has_h) {
                    lo = vorrq_s8(lo, bits16_x10(awq_rd32(blk + qh_at + 4 * j) >> (16 * h)));
                    hi = vorrq_s8(hi, bits16_x10(awq_rd32(blk + qh_at + 4 * (j + 4)) >> (16 * h)));
                }
                if (!has_m) { /* Q4_1 / Q5_1 stay unsigned (0..31 fits int8); their mins come back below */
                    lo = vsubq_s8(lo, off);
                    hi = vsubq_s8(hi, off);
                }
                for (int t = 0; t < nx; t++) {
                    s[t][h] = dot4x4(s[t][h], lo, bcast4(x[t][b].qs + 4 * j));
                    s[t][h] = dot4x4(s[t][h], hi, bcast4(x[t][b].qs + 16 + 4 * j));
                }
            }
        const float16x8_t d16 = vreinterpretq_f16_u16(vld1q_u16((const uint16_t *)(const void *)blk));
        const float32x4_t dw[2] = {vcvt_f32_f16(vget_low_f16(d16)), vcvt_high_f32_f16(d16)};
        const float16x8_t m16 = vreinterpretq_f16_u16(vld1q_u16((const uint16_t *)(const void *)(blk + 16)));
        const float32x4_t mw[2] = {vcvt_f32_f16(vget_low_f16(m16)), vcvt_high_f32_f16(m16)}; /* used with has_m */
        for (int t = 0; t < nx; t++)
            for (int h = 0; h < 2; h++) {
                acc[t][h] = vfmaq_f32(acc[t][h], vmulq_n_f32(dw[h], x[t][b].d), vcvtq_f32_s32(s[t][h]));
                if (has_m) acc[t][h] = vfmaq_n_f32(acc[t][h], vmulq_n_f32(mw[h], x[t][b].d), (float)x[t][b].s);
            }
    }
    for (int t = 0; t < nx; t++) {
        vst1q_f32(y + t * ys, acc[t][0]);
        vst1q_f32(y + t * ys + 4, acc[t][1]);
    }
}

AWQ_GEMM8_ENTRIES

/* ---- GEMM over interleaved Q2_K / Q3_K (blk_q2_Kx8 / blk_q3_Kx8): 8 rows x up to 4 activations --------------
 * A plain form: each 16-byte half of a quant vector (4 elements of 4 rows) unpacked with byte shifts and masks,
 * dotted with the broadcast activation word (row sums in the lanes), weighted per sub-block by the rows' scales
 * (taken from the layout in scalar code once per super-block); mins / Q3_K's offset through the block sums. */
static inline __attribute__((always_inline)) void gemm8k_nx(int64_t n, const void *wp, const void *vx, int64_t xs,
                                                            float *y, int64_t ys, const int nx, const int kind) {
    const uint8_t *w = wp;
    const size_t bs = kind == 2 ? sizeof(blk_q2_Kx8) : sizeof(blk_q3_Kx8);
    const act_q8_K *x[4];
    float acc[4][8];
    for (int t = 0; t < 4; t++) {
        x[t] = (const act_q8_K *)((const uint8_t *)vx + (t < nx ? t : 0) * xs);
        for (int r = 0; r < 8; r++) acc[t][r] = 0.0f;
    }
    for (int64_t b = 0; b < n / QKK; b++) {
        const uint8_t *blk = w + b * bs;
        int32_t sc[16][8], mn[16][8];
        float dw[8], dm[8];
        if (kind == 2) {
            const blk_q2_Kx8 *k = (const blk_q2_Kx8 *)(const void *)blk;
            for (int s = 0; s < 16; s++)
                for (int r = 0; r < 8; r++) {
                    const uint8_t v = k->sm[awq_x8k_sc_at(r, s)];
                    sc[s][r] = v & 0xF;
                    mn[s][r] = v >> 4;
                }
            for (int r = 0; r < 8; r++) { dw[r] = h2f(k->d[r]); dm[r] = h2f(k->dmin[r]); }
        } else {
            const blk_q3_Kx8 *k = (const blk_q3_Kx8 *)(const void *)blk;
            for (int s = 0; s < 16; s++)
                for (int r = 0; r < 8; r++) {
                    sc[s][r] = (int8_t)awq_q3x8_sc(k->sc, awq_x8k_sc_at(r, s)) / 4;
                    mn[s][r] = 4 * sc[s][r]; /* the offset 4 */
                }
            for (int r = 0; r < 8; r++) dw[r] = dm[r] = h2f(k->d[r]); /* the offset times d */
        }
        const uint8_t *qs = kind == 2 ? blk + offsetof(blk_q2_Kx8, qs) : blk + offsetof(blk_q3_Kx8, qs);
        int32x4_t ai[4][2];
        for (int t = 0; t < 4; t++) ai[t][0] = ai[t][1] = vdupq_n_s32(0);
        for (int s = 0; s < 16; s++)
            for (int h = 0; h < 2; h++) {
                int8x16_t u[4];
                for (int j = 0; j < 4; j++) {
                    if (kind == 2) {
                        const uint8x16_t v = vld1q_u8(qs + 128 * (s / 4) + 32 * j + 16 * h);
                        u[j] = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(v, vdupq_n_s8((int8_t)(-2 * (s % 4)))), vdupq_n_u8(3)));
                    } else {
                        const int slot = 4 * (s % 2) + j;
                        const uint8_t *at = qs + 96 * (s / 2) + 16 * h;
                        uint8x16_t v;
                        if (slot < 6) {
                            v = vshlq_u8(vld1q_u8(at + 32 * (slot / 2)), vdupq_n_s8((int8_t)(-4 * (slot % 2))));
                        } else {
                            const int8x16_t sh = vdupq_n_s8((int8_t)(slot == 6 ? -3 : -7));
                            const uint8x16_t one = vdupq_n_u8(1);
                            v = vandq_u8(vshlq_u8(vld1q_u8(at), sh), one);
                            v = vorrq_u8(v, vshlq_n_u8(vandq_u8(vshlq_u8(vld1q_u8(at + 32), sh), one), 1));
                            v = vorrq_u8(v, vshlq_n_u8(vandq_u8(vshlq_u8(vld1q_u8(at + 64), sh), one), 2));
                        }
                        u[j] = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(7)));
                    }
                }
                const int32x4_t scv = vld1q_s32(&sc[s][4 * h]);
                for (int t = 0; t < nx; t++) {
                    int32x4_t d = vdupq_n_s32(0);
                    for (int j = 0; j < 4; j++) d = dot4x4(d, u[j], bcast4(x[t][b].qs + 16 * s + 4 * j));
                    ai[t][h] = vmlaq_s32(ai[t][h], d, scv);
                }
            }
        for (int t = 0; t < nx; t++) {
            int32_t main[8];
            vst1q_s32(main, ai[t][0]);
            vst1q_s32(main + 4, ai[t][1]);
            for (int r = 0; r < 8; r++) {
                int32_t m = 0;
                for (int s = 0; s < 16; s++) m += mn[s][r] * x[t][b].bsums[s];
                acc[t][r] += x[t][b].d * (dw[r] * (float)main[r] - dm[r] * (float)m);
            }
        }
    }
    for (int t = 0; t < nx; t++)
        for (int r = 0; r < 8; r++) y[t * ys + r] = acc[t][r];
}

AWQ_GEMM8K_ENTRIES

/* ---- float weights ---------------------------------------------------------------------------- */

static float dot_f32(int64_t n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vld1q_f32(w + i + 4), vld1q_f32(x + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static float dot_f16(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw; const float *x = vx;
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(w + 2 * i));
        a0 = vfmaq_f32(a0, vcvt_f32_f16(vget_low_f16(h)), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vcvt_high_f32_f16(h), vld1q_f32(x + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) s += h2f(awq_rd16(w + 2 * i)) * x[i];
    return s;
}

const awq_kernels *awq_kernels_neon(void) {
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
        AWQ_SET_GEMM8(k);
#if defined(__ARM_FEATURE_DOTPROD)
        k.name = "neon-dotprod";
#else
        k.name = "neon";
#endif
    }
    return &k;
}
