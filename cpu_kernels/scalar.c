/* Scalar reference kernels: activation quantization, dot products and dequantization for every type.
 * The SIMD variants must agree with these (up to float summation order). Plain C99, no intrinsics. */
#include <math.h>

#include "kernels.h"
#include "scalar.h"

/* ---- activation quantization ---------------------------------------------------------------- */

/* max |x|, or NaN if any x is NaN or infinite */
static float amax_of(const float *x, int n) {
    float amax = 0.0f;
    int finite = 1;
    for (int i = 0; i < n; i++) {
        const float a = fabsf(x[i]);
        amax = fmaxf(amax, a);
        finite &= a <= AWQ_FLT_MAX;
    }
    return finite ? amax : NAN;
}

void awq_scalar_quantize_q8_32(int64_t n, const float *x, void *vy) {
    act_q8_32 *y = (act_q8_32 *)vy;
    for (int64_t b = 0; b < n / QK32; b++, x += QK32) {
        const float amax = amax_of(x, QK32);
        if (!(amax <= AWQ_FLT_MAX)) { awq_act32_nan(&y[b]); continue; }
        const float d = amax / 127.0f, id = awq_inv_d(d);
        int32_t s = 0;
        for (int i = 0; i < QK32; i++) {
            const int q = (int)nearbyintf(x[i] * id);
            y[b].qs[i] = (int8_t)q;
            s += q;
        }
        y[b].d = d;
        y[b].s = s;
    }
}

void awq_scalar_quantize_q8_K(int64_t n, const float *x, void *vy) {
    act_q8_K *y = (act_q8_K *)vy;
    for (int64_t b = 0; b < n / QKK; b++, x += QKK) {
        const float amax = amax_of(x, QKK);
        if (!(amax <= AWQ_FLT_MAX)) { awq_actK_nan(&y[b]); continue; }
        const float d = amax / 127.0f, id = awq_inv_d(d);
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int i = 16 * j; i < 16 * j + 16; i++) {
                const int q = (int)nearbyintf(x[i] * id);
                y[b].qs[i] = (int8_t)q;
                s += q;
            }
            y[b].bsums[j] = (int16_t)s;
        }
        y[b].d = d;
    }
}

/* ---- 32-element types: unpack one block to unsigned values, then w = d * (q - off) + m ------- */

static void unpack_nib(const uint8_t *qs, uint8_t *q) {
    for (int j = 0; j < 16; j++) { q[j] = qs[j] & 0xF; q[j + 16] = qs[j] >> 4; }
}

static void unpack_5(const uint8_t *qs, const uint8_t *qh4, uint8_t *q) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (uint8_t)((qs[j] & 0xF) | (((qh >> j) & 1) << 4));
        q[j + 16] = (uint8_t)((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
    }
}

static int32_t idot32(const uint8_t *q, const int8_t *x) {
    int32_t s = 0;
    for (int i = 0; i < 32; i++) s += (int32_t)q[i] * x[i];
    return s;
}

static float dot_q4_0(int64_t n, const void *vw, const void *vx) {
    const blk_q4_0 *w = vw; const act_q8_32 *x = vx;
    float acc = 0.0f;
    uint8_t q[32];
    for (int64_t b = 0; b < n / QK32; b++) {
        unpack_nib(w[b].qs, q);
        acc += awq_h2f(w[b].d) * x[b].d * (float)(idot32(q, x[b].qs) - 8 * x[b].s);
    }
    return acc;
}

static float dot_q4_1(int64_t n, const void *vw, const void *vx) {
    const blk_q4_1 *w = vw; const act_q8_32 *x = vx;
    float acc = 0.0f;
    uint8_t q[32];
    for (int64_t b = 0; b < n / QK32; b++) {
        unpack_nib(w[b].qs, q);
        acc += x[b].d * (awq_h2f(w[b].d) * (float)idot32(q, x[b].qs) + awq_h2f(w[b].m) * (float)x[b].s);
    }
    return acc;
}

static float dot_q5_0(int64_t n, const void *vw, const void *vx) {
    const blk_q5_0 *w = vw; const act_q8_32 *x = vx;
    float acc = 0.0f;
    uint8_t q[32];
    for (int64_t b = 0; b < n / QK32; b++) {
        unpack_5(w[b].qs, w[b].qh, q);
        acc += awq_h2f(w[b].d) * x[b].d * (float)(idot32(q, x[b].qs) - 16 * x[b].s);
    }
    return acc;
}

static float dot_q5_1(int64_t n, const void *vw, const void *vx) {
    const blk_q5_1 *w = vw; const act_q8_32 *x = vx;
    float acc = 0.0f;
    uint8_t q[32];
    for (int64_t b = 0; b < n / QK32; b++) {
        unpack_5(w[b].qs, w[b].qh, q);
        acc += x[b].d * (awq_h2f(w[b].d) * (float)idot32(q, x[b].qs) + awq_h2f(w[b].m) * (float)x[b].s);
    }
    return acc;
}

static float dot_q8_0(int64_t n, const void *vw, const void *vx) {
    const blk_q8_0 *w = vw; const act_q8_32 *x = vx;
    float acc = 0.0f;
    for (int64_t b = 0; b < n / QK32; b++) {
        int32_t s = 0;
        for (int i = 0; i < 32; i++) s += (int32_t)w[b].qs[i] * x[b].qs[i];
        acc += awq_h2f(w[b].d) * x[b].d * (float)s;
    }
    return acc;
}

static void deq_q4_0(int64_t n, const void *vw, float *y) {
    const blk_q4_0 *w = vw;
    uint8_t q[32];
    for (int64_t b = 0; b < n / QK32; b++, y += 32) {
        const float d = awq_h2f(w[b].d);
        unpack_nib(w[b].qs, q);
        for (int i = 0; i < 32; i++) y[i] = d * (float)(q[i] - 8);
    }
}

static void deq_q4_1(int64_t n, const void *vw, float *y) {
    const blk_q4_1 *w = vw;
    uint8_t q[32];
    for (int64_t b = 0; b < n / QK32; b++, y += 32) {
        const float d = awq_h2f(w[b].d), m = awq_h2f(w[b].m);
        unpack_nib(w[b].qs, q);
        for (int i = 0; i < 32; i++) y[i] = d * (float)q[i] + m;
    }
}

static void deq_q5_0(int64_t n, const void *vw, float *y) {
    const blk_q5_0 *w = vw;
    uint8_t q[32];
    for (int64_t b = 0; b < n / QK32; b++, y += 32) {
        const float d = awq_h2f(w[b].d);
        unpack_5(w[b].qs, w[b].qh, q);
        for (int i = 0; i < 32; i++) y[i] = d * (float)(q[i] - 16);
    }
}

static void deq_q5_1(int64_t n, const void *vw, float *y) {
    const blk_q5_1 *w = vw;
    uint8_t q[32];
    for (int64_t b = 0; b < n / QK32; b++, y += 32) {
        const float d = awq_h2f(w[b].d), m = awq_h2f(w[b].m);
        unpack_5(w[b].qs, w[b].qh, q);
        for (int i = 0; i < 32; i++) y[i] = d * (float)q[i] + m;
    }
}

static void deq_q8_0(int64_t n, const void *vw, float *y) {
    const blk_q8_0 *w = vw;
    for (int64_t b = 0; b < n / QK32; b++, y += 32) {
        const float d = awq_h2f(w[b].d);
        for (int i = 0; i < 32; i++) y[i] = d * (float)w[b].qs[i];
    }
}

/* ---- K types: one super-block as 256 unsigned values q, 16 integer scales sc and mins mn (per 16
 * elements), an offset off and two float factors:  w[i] = d * sc[i/16] * (q[i] - off) - dmin * mn[i/16] */

void awq_unpack_q2_K(const void *vb, kblock_t *k) {
    const blk_q2_K *b = vb;
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) k->q[128 * h + 32 * j + l] = (b->qs[32 * h + l] >> (2 * j)) & 3;
    for (int j = 0; j < 16; j++) { k->sc[j] = b->scales[j] & 0xF; k->mn[j] = b->scales[j] >> 4; }
    k->off = 0; k->d = awq_h2f(b->d); k->dmin = awq_h2f(b->dmin);
}

void awq_unpack_q3_K(const void *vb, kblock_t *k) {
    const blk_q3_K *b = vb;
    int8_t sc[16];
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++)
                k->q[128 * h + 32 * j + l] = (uint8_t)(((b->qs[32 * h + l] >> (2 * j)) & 3) |
                                                       (((b->hmask[l] >> (4 * h + j)) & 1) << 2));
    awq_q3k_scales(b->scales, sc);
    for (int j = 0; j < 16; j++) { k->sc[j] = sc[j]; k->mn[j] = 0; }
    k->off = 4; k->d = awq_h2f(b->d); k->dmin = 0.0f;
}

void awq_unpack_q4_K(const void *vb, kblock_t *k) {
    const blk_q4_K *b = vb;
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            k->q[64 * j + l] = b->qs[32 * j + l] & 0xF;
            k->q[64 * j + 32 + l] = b->qs[32 * j + l] >> 4;
        }
    for (int j = 0; j < 8; j++) {
        int sc, m;
        awq_scale_min_k4(j, b->scales, &sc, &m);
        k->sc[2 * j] = k->sc[2 * j + 1] = (int16_t)sc;
        k->mn[2 * j] = k->mn[2 * j + 1] = (int16_t)m;
    }
    k->off = 0; k->d = awq_h2f(b->d); k->dmin = awq_h2f(b->dmin);
}

void awq_unpack_q5_K(const void *vb, kblock_t *k) {
    const blk_q5_K *b = vb;
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 32; l++) {
            k->q[64 * j + l] = (uint8_t)((b->qs[32 * j + l] & 0xF) | (((b->qh[l] >> (2 * j)) & 1) << 4));
            k->q[64 * j + 32 + l] = (uint8_t)((b->qs[32 * j + l] >> 4) | (((b->qh[l] >> (2 * j + 1)) & 1) << 4));
        }
    for (int j = 0; j < 8; j++) {
        int sc, m;
        awq_scale_min_k4(j, b->scales, &sc, &m);
        k->sc[2 * j] = k->sc[2 * j + 1] = (int16_t)sc;
        k->mn[2 * j] = k->mn[2 * j + 1] = (int16_t)m;
    }
    k->off = 0; k->d = awq_h2f(b->d); k->dmin = awq_h2f(b->dmin);
}

void awq_unpack_q6_K(const void *vb, kblock_t *k) {
    const blk_q6_K *b = vb;
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        uint8_t *q = k->q + 128 * h;
        for (int l = 0; l < 32; l++) {
            q[l] = (uint8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4));
            q[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
            q[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            q[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
    for (int j = 0; j < 16; j++) { k->sc[j] = b->scales[j]; k->mn[j] = 0; }
    k->off = 32; k->d = awq_h2f(b->d); k->dmin = 0.0f;
}

typedef void (*unpack_fn)(const void *, kblock_t *);

/* one unpacked super-block times one activation block */
static float kblock_dot(const kblock_t *k, const act_q8_K *x) {
    int32_t main = 0, mins = 0;
    for (int j = 0; j < 16; j++) {
        int32_t s = 0;
        for (int i = 16 * j; i < 16 * j + 16; i++) s += (int32_t)k->q[i] * x->qs[i];
        main += k->sc[j] * (s - k->off * x->bsums[j]);
        mins += k->mn[j] * x->bsums[j];
    }
    return x->d * (k->d * (float)main - k->dmin * (float)mins);
}

static float kdot(int64_t n, const void *vw, size_t bsize, unpack_fn unpack, const void *vx) {
    const uint8_t *w = vw; const act_q8_K *x = vx;
    float acc = 0.0f;
    kblock_t k;
    for (int64_t b = 0; b < n / QKK; b++) {
        unpack(w + b * bsize, &k);
        acc += kblock_dot(&k, &x[b]);
    }
    return acc;
}

static void kdeq(int64_t n, const void *vw, size_t bsize, unpack_fn unpack, float *y) {
    const uint8_t *w = vw;
    kblock_t k;
    for (int64_t b = 0; b < n / QKK; b++, y += QKK) {
        unpack(w + b * bsize, &k);
        for (int i = 0; i < QKK; i++)
            y[i] = k.d * (float)k.sc[i / 16] * (float)(k.q[i] - k.off) - k.dmin * (float)k.mn[i / 16];
    }
}

#define KTYPE(T)                                                                                     \
    static float dot_##T(int64_t n, const void *w, const void *x) {                                  \
        return kdot(n, w, sizeof(blk_##T), awq_unpack_##T, x);                                      \
    }                                                                                                \
    static void deq_##T(int64_t n, const void *w, float *y) { kdeq(n, w, sizeof(blk_##T), awq_unpack_##T, y); }
KTYPE(q2_K)
KTYPE(q3_K)
KTYPE(q4_K)
KTYPE(q5_K)
KTYPE(q6_K)

/* ---- float weights: x is the float activation row ------------------------------------------- */

static float dot_f32(int64_t n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) acc += w[i] * x[i];
    return acc;
}

static float dot_f16(int64_t n, const void *vw, const void *vx) {
    const uint8_t *w = vw; const float *x = vx;
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) acc += awq_h2f(awq_rd16(w + 2 * i)) * x[i];
    return acc;
}

static void deq_f32(int64_t n, const void *w, float *y) { memcpy(y, w, (size_t)n * 4); }

static void deq_f16(int64_t n, const void *vw, float *y) {
    const uint8_t *w = vw;
    for (int64_t i = 0; i < n; i++) y[i] = awq_h2f(awq_rd16(w + 2 * i));
}

/* ---- interleaved Q4_0 / Q5_0 (blk_q4_0x8 / blk_q5_0x8): 8 rows against nx activation rows -------- */

/* 8 interleaved rows (matmul.c's awq_pack layouts) against nx activation rows: w = d * (q - off) + m, with q the
 * nibble (and fifth bit from the regrouped qh words: bit 4r + k of qh[v] = element 4v + k of row r) */
static void gemm8_ref(int64_t n, const void *wp, const void *vx, int64_t xs, int nx, float *y, int64_t ys, int t) {
    const int has_m = t == AWQ_Q4_1 || t == AWQ_Q5_1, has_h = t == AWQ_Q5_0 || t == AWQ_Q5_1;
    const int off = t == AWQ_Q4_0 ? 8 : t == AWQ_Q5_0 ? 16 : 0;
    const size_t bs = awq_x8_bytes(has_m, has_h), qh_at = awq_x8_qh_at(has_m);
    const size_t qs_at = awq_x8_qs_at(has_m, has_h);
    for (int tt = 0; tt < nx; tt++) {
        const act_q8_32 *x = (const act_q8_32 *)((const uint8_t *)vx + tt * xs);
        for (int r = 0; r < 8; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < n / QK32; b++) {
                const uint8_t *blk = (const uint8_t *)wp + b * bs;
                int32_t s = 0;
                for (int v = 0; v < 8; v++) /* elements 4v .. 4v+3 */
                    for (int k = 0; k < 4; k++) {
                        const uint8_t byte = blk[qs_at + 32 * (v % 4) + 4 * r + k];
                        int q = v < 4 ? byte & 0xF : byte >> 4;
                        if (has_h) q |= (int)((awq_rd32(blk + qh_at + 4 * v) >> (4 * r + k)) & 1) << 4;
                        s += q * x[b].qs[4 * v + k];
                    }
                acc += awq_h2f(awq_rd16(blk + 2 * r)) * x[b].d * (float)(s - off * x[b].s);
                if (has_m) acc += awq_h2f(awq_rd16(blk + 16 + 2 * r)) * x[b].d * (float)x[b].s;
            }
            y[tt * ys + r] = acc;
        }
    }
}

#define GEMM8_REF(T, ID) \
    static void gemm8_##T(int64_t n, const void *wp, const void *vx, int64_t xs, int nx, float *y, int64_t ys) { \
        gemm8_ref(n, wp, vx, xs, nx, y, ys, ID); \
    }
GEMM8_REF(q4_0, AWQ_Q4_0)
GEMM8_REF(q4_1, AWQ_Q4_1)
GEMM8_REF(q5_0, AWQ_Q5_0)
GEMM8_REF(q5_1, AWQ_Q5_1)

/* ---- interleaved Q2_K / Q3_K (blk_q2_Kx8 / blk_q3_Kx8) ---------------------------------------------- */

void awq_unpack_x8k(int t, const void *vb, int r, kblock_t *k) {
    if (t == AWQ_Q2_K) {
        const blk_q2_Kx8 *b = vb;
        for (int e = 0; e < QKK; e++) {
            int sh;
            const int at = awq_q2x8_at(r, e, &sh);
            k->q[e] = (b->qs[at] >> sh) & 3;
        }
        for (int s = 0; s < 16; s++) {
            const uint8_t v = b->sm[awq_x8k_sc_at(r, s)];
            k->sc[s] = v & 0xF;
            k->mn[s] = v >> 4;
        }
        k->off = 0; k->d = awq_h2f(b->d[r]); k->dmin = awq_h2f(b->dmin[r]);
        return;
    }
    const blk_q3_Kx8 *b = vb;
    for (int e = 0; e < QKK; e++) k->q[e] = (uint8_t)awq_q3x8_get(b->qs, r, e);
    for (int s = 0; s < 16; s++) { k->sc[s] = (int8_t)awq_q3x8_sc(b->sc, awq_x8k_sc_at(r, s)) / 4; k->mn[s] = 0; }
    k->off = 4; k->d = awq_h2f(b->d[r]); k->dmin = 0.0f;
}

/* 8 interleaved K rows against nx activation rows: each row's super-blocks unpacked (awq_unpack_x8k) and
 * summed as kdot does */
static void gemm8_kref(int64_t n, const void *wp, const void *vx, int64_t xs, int nx, float *y, int64_t ys, int t) {
    const size_t bs = t == AWQ_Q2_K ? sizeof(blk_q2_Kx8) : sizeof(blk_q3_Kx8);
    kblock_t k;
    for (int tt = 0; tt < nx; tt++) {
        const act_q8_K *x = (const act_q8_K *)((const uint8_t *)vx + tt * xs);
        for (int r = 0; r < 8; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < n / QKK; b++) {
                awq_unpack_x8k(t, (const uint8_t *)wp + b * bs, r, &k);
                acc += kblock_dot(&k, &x[b]);
            }
            y[tt * ys + r] = acc;
        }
    }
}

static void gemm8_q2_K(int64_t n, const void *wp, const void *vx, int64_t xs, int nx, float *y, int64_t ys) {
    gemm8_kref(n, wp, vx, xs, nx, y, ys, AWQ_Q2_K);
}
static void gemm8_q3_K(int64_t n, const void *wp, const void *vx, int64_t xs, int nx, float *y, int64_t ys) {
    gemm8_kref(n, wp, vx, xs, nx, y, ys, AWQ_Q3_K);
}

void awq_scalar_fill(awq_kernels *k) {
    k->quantize_q8_32 = awq_scalar_quantize_q8_32;
    k->quantize_q8_K = awq_scalar_quantize_q8_K;
#define SET(ID, T) k->dot[ID] = dot_##T; k->dequant[ID] = deq_##T;
    SET(AWQ_F32, f32) SET(AWQ_F16, f16)
    SET(AWQ_Q4_0, q4_0) SET(AWQ_Q4_1, q4_1) SET(AWQ_Q5_0, q5_0) SET(AWQ_Q5_1, q5_1) SET(AWQ_Q8_0, q8_0)
    SET(AWQ_Q2_K, q2_K) SET(AWQ_Q3_K, q3_K) SET(AWQ_Q4_K, q4_K) SET(AWQ_Q5_K, q5_K) SET(AWQ_Q6_K, q6_K)
#undef SET
}

const awq_kernels *awq_kernels_scalar(void) {
    static awq_kernels k;
    if (!k.name) {
        awq_scalar_fill(&k);
        k.gemm8[AWQ_Q4_0] = gemm8_q4_0; k.gemm8[AWQ_Q4_1] = gemm8_q4_1;
        k.gemm8[AWQ_Q5_0] = gemm8_q5_0; k.gemm8[AWQ_Q5_1] = gemm8_q5_1;
        k.gemm8[AWQ_Q2_K] = gemm8_q2_K; k.gemm8[AWQ_Q3_K] = gemm8_q3_K;
        k.name = "scalar";
    }
    return &k;
}
