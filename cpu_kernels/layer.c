/* The decode step of whole transformer layers for one token, in one C call (the runner's generation path).
 *
 * Per layer, as awq_gguf/runner/model.py computes it for one token:
 *   h = rms_norm(x) * attn_norm
 *   q, k, v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)        one threaded job over the three matrices
 *   q, k = rms_norm_per_head(q) * q_norm, ... (k)              [qwen3]
 *   q, k = rope(q, pos), rope(k, pos)                          NORMAL (adjacent pairs) or NEOX (halves)
 *   cache[pos] = k, v;  a = softmax(q K^T / sqrt(d)) V         grouped-query: head h reads kv head h / n_gqa
 *   x += a Wo^T
 *   h = rms_norm(x) * ffn_norm
 *   x += (silu(h Wgate^T) * (h Wup^T)) Wdown^T                 gate and up in one threaded job
 *
 * The matrix products and the q.k dot products go through the kernel table chosen at run time (awq_current():
 * scalar / AVX2 / AVX-512 / NEON), so this file has one variant only: its own loops (norms, RoPE, softmax,
 * the p.V sums, SiLU) are O(n_embd + n_head * T * head_dim) plain C, a few percent of a step. Activations are
 * quantized once per input vector and weight family (8-bit 32-blocks, 8-bit 256-blocks, or float), as
 * awq_matmul would for each product. */
#include <math.h>
#include <stdlib.h>

#include "api.h"
#include "drivers.h"
#include "kernels.h"
#include "pool.h"

static int is_k(int t) { return t >= AWQ_Q2_K && t <= AWQ_Q6_K; }
static int is_float(int t) { return t == AWQ_F32 || t == AWQ_F16; }

/* 0 if m is a valid matrix of rows x cols for the current kernels (packed: a type and row count awq_pack takes) */
static int check_mat(const awq_mat_t *m, int64_t rows, int64_t cols) {
    if (!m->w || m->rows != rows || m->cols != cols || (m->packed != 0 && m->packed != 1)) return -2;
    if (m->packed && !awq_packed_bytes(m->qtype, rows, cols)) return awq_packed_bytes(m->qtype, 8, 32) ? -2 : -1;
    return awq_check_weights(m->qtype, cols, m->row_bytes);
}

/* ---- activations: one input vector quantized once per family ----------------------------------- */

typedef struct {
    const float *x;
    int64_t n;
    uint8_t *q32, *qK; /* buffers of awq_act_row_bytes(Q8_0 / Q4_K, n) bytes (NULL where n does not fit) */
    int have32, haveK;
} act_t;

static const uint8_t *act_for(const awq_kernels *k, act_t *a, int t) {
    if (is_float(t)) return (const uint8_t *)a->x;
    if (is_k(t)) {
        if (!a->haveK) { k->quantize_q8_K(a->n, a->x, a->qK); a->haveK = 1; }
        return a->qK;
    }
    if (!a->have32) { k->quantize_q8_32(a->n, a->x, a->q32); a->have32 = 1; }
    return a->q32;
}

/* ---- up to three GEMVs in one threaded job (rows of the matrices concatenated) ------------------- */

typedef struct {
    const awq_kernels *k;
    int nm;
    int64_t unit; /* rows per pool item: 8 when every matrix has a multiple of 8 rows (whole interleaved groups) */
    const awq_mat_t *m[3];
    const uint8_t *xq[3];
    float *y[3];
    int64_t start[4];
} gemv_job_t;

/* rows a..b-1 of the interleaved matrix m (groups of 8 computed whole; rows outside a..b-1 are not written) */
static void gemv_packed(const awq_kernels *k, const awq_mat_t *m, const uint8_t *xq, float *y, int64_t a, int64_t b) {
    awq_gemm8_fn g8 = k->gemm8[m->qtype];
    if (!g8) g8 = awq_kernels_scalar()->gemm8[m->qtype]; /* an ISA without its own interleaved kernel */
    const int64_t gbytes = 8 * m->row_bytes; /* a group of 8 rows takes the bytes of 8 file rows */
    for (int64_t g = a / 8; 8 * g < b; g++) {
        if (8 * g >= a && 8 * g + 8 <= b) {
            g8(m->cols, (const uint8_t *)m->w + g * gbytes, xq, 0, 1, y + 8 * g, 0);
        } else {
            float tmp[8];
            g8(m->cols, (const uint8_t *)m->w + g * gbytes, xq, 0, 1, tmp, 0);
            for (int64_t r = 8 * g > a ? 8 * g : a; r < 8 * g + 8 && r < b; r++) y[r] = tmp[r - 8 * g];
        }
    }
}

static void gemv_rows(void *ctx, int64_t u0, int64_t u1) {
    const gemv_job_t *j = ctx;
    const int64_t r0 = u0 * j->unit, r1 = u1 * j->unit;
    for (int i = 0; i < j->nm; i++) {
        const int64_t a = r0 > j->start[i] ? r0 : j->start[i], b = r1 < j->start[i + 1] ? r1 : j->start[i + 1];
        if (a >= b) continue;
        const awq_mat_t *m = j->m[i];
        const uint8_t *xq = j->xq[i];
        if (m->packed) gemv_packed(j->k, m, xq, j->y[i], a - j->start[i], b - j->start[i]);
        else awq_gemv_file_rows(j->k, m->qtype, m->cols, (const uint8_t *)m->w, m->row_bytes, xq, j->y[i],
                                a - j->start[i], b - j->start[i]);
    }
}

static void gemv(const awq_kernels *k, act_t *a, int nm, const awq_mat_t *const *m, float *const *y, int nthreads) {
    gemv_job_t j;
    j.k = k;
    j.nm = nm;
    j.unit = 8;
    j.start[0] = 0;
    for (int i = 0; i < nm; i++) {
        j.m[i] = m[i];
        j.xq[i] = act_for(k, a, m[i]->qtype);
        j.y[i] = y[i];
        j.start[i + 1] = j.start[i] + m[i]->rows;
        if (m[i]->rows % 8) j.unit = 1;
    }
    awq_parallel_for(gemv_rows, &j, j.start[nm] / j.unit, nthreads);
}

/* ---- small ops -------------------------------------------------------------------------------- */

/* y = x * (1 / sqrt(mean(x^2) + eps)) * w, as ggml_rms_norm then ggml_mul (sum in double, as ggml) */
static void rms_norm(const float *x, const float *w, int64_t n, float eps, float *y) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    const float scale = 1.0f / sqrtf((float)(s / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

static void add_vec(float *y, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += b[i];
}

/* rotates each of n_heads heads of v [n_heads, d] in place by the angle row (cos, sin [d/2]) */
static void rope(float *v, int64_t n_heads, int64_t d, const float *cs, const float *sn, int neox) {
    const int64_t half = d / 2;
    for (int64_t h = 0; h < n_heads; h++, v += d) {
        if (neox) {
            for (int64_t i = 0; i < half; i++) {
                const float x0 = v[i], x1 = v[i + half];
                v[i] = x0 * cs[i] - x1 * sn[i];
                v[i + half] = x0 * sn[i] + x1 * cs[i];
            }
        } else {
            for (int64_t i = 0; i < half; i++) {
                const float x0 = v[2 * i], x1 = v[2 * i + 1];
                v[2 * i] = x0 * cs[i] - x1 * sn[i];
                v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
            }
        }
    }
}

/* attention of each query head over positions 0..T-1 of its kv head, heads in parallel */
typedef struct {
    const awq_kernels *k;
    const float *q, *kc, *vc;
    float *out, *scores;
    int64_t T, d, n_ctx, n_gqa;
    float scale;
} attn_job_t;

static void attn_heads(void *ctx, int64_t h0, int64_t h1) {
    const attn_job_t *j = ctx;
    const awq_dot_fn dot = j->k->dot[AWQ_F32];
    const int64_t d = j->d, T = j->T;
    for (int64_t h = h0; h < h1; h++) {
        const int64_t g = h / j->n_gqa;
        const float *qh = j->q + h * d;
        const float *kg = j->kc + g * j->n_ctx * d, *vg = j->vc + g * j->n_ctx * d;
        float *s = j->scores + h * T, *o = j->out + h * d;
        float mx = -INFINITY;
        for (int64_t t = 0; t < T; t++) {
            s[t] = dot(d, kg + t * d, qh) * j->scale;
            mx = s[t] > mx ? s[t] : mx;
        }
        float sum = 0.0f;
        for (int64_t t = 0; t < T; t++) {
            s[t] = expf(s[t] - mx);
            sum += s[t];
        }
        const float inv = 1.0f / sum;
        for (int64_t i = 0; i < d; i++) o[i] = 0.0f;
        for (int64_t t = 0; t < T; t++) {
            const float p = s[t] * inv;
            const float *vt = vg + t * d;
            for (int64_t i = 0; i < d; i++) o[i] += p * vt[i];
        }
    }
}

/* ---- one layer -------------------------------------------------------------------------------- */

static int check_layer(const awq_decode_cfg_t *c, const awq_layer_t *L) {
    const int64_t nq = c->n_head * c->head_dim, nkv = c->n_head_kv * c->head_dim;
    int rc;
    if (!L->attn_norm || !L->ffn_norm || !L->k_cache || !L->v_cache) return -2;
    if (!L->bq != !L->bk || !L->bq != !L->bv || !L->q_norm != !L->k_norm) return -2;
    if ((rc = check_mat(&L->wq, nq, c->n_embd)) || (rc = check_mat(&L->wk, nkv, c->n_embd)) ||
        (rc = check_mat(&L->wv, nkv, c->n_embd)) || (rc = check_mat(&L->wo, c->n_embd, nq)) ||
        (rc = check_mat(&L->gate, c->n_ff, c->n_embd)) || (rc = check_mat(&L->up, c->n_ff, c->n_embd)) ||
        (rc = check_mat(&L->down, c->n_embd, c->n_ff)))
        return rc;
    return 0;
}

typedef struct {
    float *h, *q, *k, *v, *attn, *o, *g, *u, *scores;
    act_t a_embd, a_q, a_ff; /* quantized copies of h, attn, g */
} scratch_t;

static void layer_step(const awq_decode_cfg_t *c, const awq_layer_t *L, int64_t pos, float *x, scratch_t *S,
                       int nthreads) {
    const awq_kernels *k = awq_current();
    const int64_t d = c->head_dim, nq = c->n_head * d, nkv = c->n_head_kv * d;

    rms_norm(x, L->attn_norm, c->n_embd, c->eps, S->h);
    S->a_embd.have32 = S->a_embd.haveK = 0;
    {
        const awq_mat_t *m[3] = {&L->wq, &L->wk, &L->wv};
        float *y[3] = {S->q, S->k, S->v};
        gemv(k, &S->a_embd, 3, m, y, nthreads);
    }
    if (L->bq) { add_vec(S->q, L->bq, nq); add_vec(S->k, L->bk, nkv); add_vec(S->v, L->bv, nkv); }
    if (L->q_norm) {
        for (int64_t h = 0; h < c->n_head; h++) rms_norm(S->q + h * d, L->q_norm, d, c->eps, S->q + h * d);
        for (int64_t h = 0; h < c->n_head_kv; h++) rms_norm(S->k + h * d, L->k_norm, d, c->eps, S->k + h * d);
    }
    const float *cs = c->rope_cos + pos * (d / 2), *sn = c->rope_sin + pos * (d / 2);
    rope(S->q, c->n_head, d, cs, sn, c->rope_neox);
    rope(S->k, c->n_head_kv, d, cs, sn, c->rope_neox);
    for (int64_t g = 0; g < c->n_head_kv; g++) {
        memcpy(L->k_cache + (g * c->n_ctx + pos) * d, S->k + g * d, (size_t)d * 4);
        memcpy(L->v_cache + (g * c->n_ctx + pos) * d, S->v + g * d, (size_t)d * 4);
    }
    attn_job_t aj = {k, S->q, L->k_cache, L->v_cache, S->attn, S->scores, pos + 1, d, c->n_ctx,
                     c->n_head / c->n_head_kv, 1.0f / sqrtf((float)d)};
    /* threads pay only once the cache is long enough to outweigh a fork-join */
    awq_parallel_for(attn_heads, &aj, c->n_head, (pos + 1) * nq >= (1 << 15) ? nthreads : 1);

    S->a_q.have32 = S->a_q.haveK = 0;
    {
        const awq_mat_t *m[1] = {&L->wo};
        float *y[1] = {S->o};
        gemv(k, &S->a_q, 1, m, y, nthreads);
    }
    add_vec(x, S->o, c->n_embd);

    rms_norm(x, L->ffn_norm, c->n_embd, c->eps, S->h);
    S->a_embd.have32 = S->a_embd.haveK = 0;
    {
        const awq_mat_t *m[2] = {&L->gate, &L->up};
        float *y[2] = {S->g, S->u};
        gemv(k, &S->a_embd, 2, m, y, nthreads);
    }
    for (int64_t i = 0; i < c->n_ff; i++) {
        const float gi = S->g[i];
        S->g[i] = gi / (1.0f + expf(-gi)) * S->u[i];
    }
    S->a_ff.have32 = S->a_ff.haveK = 0;
    {
        const awq_mat_t *m[1] = {&L->down};
        float *y[1] = {S->o};
        gemv(k, &S->a_ff, 1, m, y, nthreads);
    }
    add_vec(x, S->o, c->n_embd);
}

/* bytes of an activation buffer of n floats quantized for either block family */
static int64_t act_bytes(int64_t n) {
    const int64_t a = n % QK32 ? 0 : n / QK32 * (int64_t)sizeof(act_q8_32);
    const int64_t b = n % QKK ? 0 : n / QKK * (int64_t)sizeof(act_q8_K);
    return (a > b ? a : b) + 64;
}

int awq_decode_layers(const awq_decode_cfg_t *c, const awq_layer_t *layers, int n_layers, int64_t pos,
                      float *x, int nthreads) {
    if (!c || !layers || !x || n_layers < 0) return -2;
    if (c->n_embd <= 0 || c->n_head <= 0 || c->n_head_kv <= 0 || c->head_dim <= 0 || c->n_ff <= 0 ||
        c->n_ctx <= 0 || c->head_dim % 2 || c->n_head % c->n_head_kv || !c->rope_cos || !c->rope_sin ||
        !(c->eps >= 0.0f))
        return -2;
    if (pos < 0 || pos >= c->n_ctx || pos >= c->rope_rows) return -2;
    for (int i = 0; i < n_layers; i++) {
        const int rc = check_layer(c, &layers[i]);
        if (rc) return rc;
    }
    if (n_layers == 0) return 0;

    const int64_t d = c->head_dim, nq = c->n_head * d, nkv = c->n_head_kv * d;
    const int64_t T = pos + 1;
    const int64_t floats = c->n_embd * 2 + nq * 2 + nkv * 2 + c->n_ff * 2 + c->n_head * T;
    const int64_t b_embd = act_bytes(c->n_embd), b_q = act_bytes(nq), b_ff = act_bytes(c->n_ff);
    /* each float region and each activation buffer starts on a 64-byte boundary */
    const size_t bytes = (size_t)(floats * 4 + 2 * (b_embd + b_q + b_ff) + 16 * 64);
    uint8_t *mem = malloc(bytes);
    if (!mem) return -3;
    uint8_t *p = mem;
#define TAKE(n) (void *)(p = (uint8_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63), p += (n), p - (n))
    scratch_t S;
    S.h = TAKE(c->n_embd * 4); S.o = TAKE(c->n_embd * 4);
    S.q = TAKE(nq * 4); S.attn = TAKE(nq * 4);
    S.k = TAKE(nkv * 4); S.v = TAKE(nkv * 4);
    S.g = TAKE(c->n_ff * 4); S.u = TAKE(c->n_ff * 4);
    S.scores = TAKE(c->n_head * T * 4);
    S.a_embd = (act_t){S.h, c->n_embd, TAKE(b_embd), TAKE(b_embd), 0, 0};
    S.a_q = (act_t){S.attn, nq, TAKE(b_q), TAKE(b_q), 0, 0};
    S.a_ff = (act_t){S.g, c->n_ff, TAKE(b_ff), TAKE(b_ff), 0, 0};
#undef TAKE
    for (int i = 0; i < n_layers; i++) layer_step(c, &layers[i], pos, x, &S, nthreads);
    free(mem);
    return 0;
}

int awq_decode_head(const awq_decode_cfg_t *c, const float *norm, const awq_mat_t *out, const float *x,
                    float *logits, int nthreads) {
    if (!c || !norm || !out || !x || !logits || c->n_embd <= 0 || !(c->eps >= 0.0f)) return -2;
    if (out->rows <= 0) return -2;
    const int rc = check_mat(out, out->rows, c->n_embd);
    if (rc) return rc;
    const int64_t b = act_bytes(c->n_embd);
    uint8_t *mem = malloc((size_t)(c->n_embd * 4 + 2 * b + 3 * 64));
    if (!mem) return -3;
    uint8_t *p = mem;
#define TAKE(n) (void *)(p = (uint8_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63), p += (n), p - (n))
    float *h = TAKE(c->n_embd * 4);
    act_t a = {h, c->n_embd, TAKE(b), TAKE(b), 0, 0};
#undef TAKE
    rms_norm(x, norm, c->n_embd, c->eps, h);
    const awq_mat_t *m[1] = {out};
    float *y[1] = {logits};
    gemv(awq_current(), &a, 1, m, y, nthreads);
    free(mem);
    return 0;
}
