/* C-level check of an ISA variant against the scalar reference, on fresh random blocks (every quant byte
 * random, fp16 scale fields finite). Built for aarch64 and run under qemu-aarch64 by test_neon_qemu.py
 * (natively on an aarch64 host). Checks: activation quantization byte-exact, every dot product within
 * 2e-5 of sum|w*x|, dequantization equal, and the threaded matmul through the dispatcher (NaN-poisoned
 * outputs, odd sizes) equal to the scalar table's; the decode step of two transformer layers (awq_decode_layers,
 * mixed weight types, grouped-query heads, three positions through the KV cache, 2 threads) equal to the scalar
 * table's within float summation order; the prompt GEMM over interleaved Q4_0 rows. Prints "N passed, M failed"; exit status 1 on failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "api.h"
#include "kernels.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float frnd(void) { return ((float)(rnd() & 0xFFFFFF) / 16777216.0f - 0.5f) * 4.0f; }

/* a finite fp16 in +-[2^-8, 2^-5) */
static uint16_t h16(void) { return (uint16_t)(((rnd() & 1) << 15) | ((7 + rnd() % 3) << 10) | (rnd() & 0x3ff)); }

typedef struct { int t; int elems, bytes; int f16[2]; const char *name; } tinfo;
static const tinfo TYPES[] = {
    {AWQ_F32, 1, 4, {-1, -1}, "F32"},      {AWQ_F16, 1, 2, {-1, -1}, "F16"},
    {AWQ_Q4_0, 32, 18, {0, -1}, "Q4_0"},   {AWQ_Q4_1, 32, 20, {0, 2}, "Q4_1"},
    {AWQ_Q5_0, 32, 22, {0, -1}, "Q5_0"},   {AWQ_Q5_1, 32, 24, {0, 2}, "Q5_1"},
    {AWQ_Q8_0, 32, 34, {0, -1}, "Q8_0"},   {AWQ_Q2_K, 256, 84, {80, 82}, "Q2_K"},
    {AWQ_Q3_K, 256, 110, {108, -1}, "Q3_K"}, {AWQ_Q4_K, 256, 144, {0, 2}, "Q4_K"},
    {AWQ_Q5_K, 256, 176, {0, 2}, "Q5_K"},  {AWQ_Q6_K, 256, 210, {208, -1}, "Q6_K"},
};

static void random_row(const tinfo *ti, int64_t cols, uint8_t *w) {
    if (ti->t == AWQ_F32) { for (int64_t i = 0; i < cols; i++) { float f = frnd(); memcpy(w + 4 * i, &f, 4); } return; }
    if (ti->t == AWQ_F16) { for (int64_t i = 0; i < cols; i++) { uint16_t h = h16(); memcpy(w + 2 * i, &h, 2); } return; }
    const int64_t nb = cols / ti->elems;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = w + b * ti->bytes;
        for (int i = 0; i < ti->bytes; i++) blk[i] = (uint8_t)rnd();
        for (int f = 0; f < 2; f++)
            if (ti->f16[f] >= 0) { uint16_t h = h16(); memcpy(blk + ti->f16[f], &h, 2); }
    }
}

static int passed = 0, failed = 0;
static void check(int ok, const char *what, const char *type, double a, double b) {
    if (ok) passed++;
    else { failed++; printf("FAIL %s %s: %.9g vs %.9g\n", what, type, a, b); }
}

static const tinfo *type_of(int t) {
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (TYPES[i].t == t) return &TYPES[i];
    return 0;
}

static awq_mat_t random_mat(int t, int64_t rows, int64_t cols) {
    const tinfo *ti = type_of(t);
    const int64_t rb = cols / ti->elems * ti->bytes;
    uint8_t *w = malloc(rows * rb);
    for (int64_t r = 0; r < rows; r++) random_row(ti, cols, w + r * rb);
    awq_mat_t m = {w, rows, rb, cols, t};
    return m;
}

/* two layers (the second with an interleaved Q4_0 wq), 3 positions: the variant (2 threads) against the scalar
 * table (1 thread) */
static void check_decode(int isa) {
    enum { E = 256, NH = 4, NKV = 2, D = 64, FF = 512, CTX = 4, NL = 2 };
    float cs[CTX * D / 2], sn[CTX * D / 2];
    for (int p = 0; p < CTX; p++)
        for (int i = 0; i < D / 2; i++) {
            cs[p * D / 2 + i] = cosf(p * powf(10000.0f, -2.0f * i / D));
            sn[p * D / 2 + i] = sinf(p * powf(10000.0f, -2.0f * i / D));
        }
    awq_decode_cfg_t cfg = {E, NH, NKV, D, FF, CTX, CTX, 1e-5f, 0, cs, sn};
    awq_layer_t L[NL];
    float *caches[2][NL][2];
    for (int l = 0; l < NL; l++) {
        memset(&L[l], 0, sizeof L[l]);
        float *an = malloc(E * 4), *fn = malloc(E * 4);
        for (int i = 0; i < E; i++) { an[i] = 1.0f + 0.1f * frnd(); fn[i] = 1.0f + 0.1f * frnd(); }
        L[l].attn_norm = an; L[l].ffn_norm = fn;
        L[l].wq = random_mat(AWQ_Q4_0, NH * D, E); L[l].wk = random_mat(AWQ_Q5_0, NKV * D, E);
        L[l].wv = random_mat(AWQ_Q8_0, NKV * D, E); L[l].wo = random_mat(AWQ_Q4_K, E, NH * D);
        L[l].gate = random_mat(AWQ_Q6_K, FF, E); L[l].up = random_mat(AWQ_Q5_1, FF, E);
        L[l].down = random_mat(AWQ_Q3_K, E, FF);
        if (l == 1) { /* the second layer's wq as awq_pack's interleaved copy */
            const int64_t size = awq_packed_bytes(AWQ_Q4_0, NH * D, E);
            void *wp = malloc(size);
            if (awq_pack(AWQ_Q4_0, L[l].wq.w, NH * D, L[l].wq.row_bytes, E, wp, size) == 0) {
                L[l].wq.w = wp;
                L[l].wq.packed = 1;
            }
        }
        for (int c = 0; c < 2; c++)
            for (int kv = 0; kv < 2; kv++) caches[c][l][kv] = calloc(NKV * CTX * D, 4);
    }
    float x[E], xr[E];
    for (int i = 0; i < E; i++) x[i] = xr[i] = frnd();
    for (int pos = 0; pos < 3; pos++) {
        for (int l = 0; l < NL; l++) { L[l].k_cache = caches[0][l][0]; L[l].v_cache = caches[0][l][1]; }
        int rc = awq_decode_layers(&cfg, L, NL, pos, x, 2);
        awq_set_isa(AWQ_ISA_SCALAR);
        for (int l = 0; l < NL; l++) { L[l].k_cache = caches[1][l][0]; L[l].v_cache = caches[1][l][1]; }
        rc |= awq_decode_layers(&cfg, L, NL, pos, xr, 1);
        awq_set_isa(isa);
        double err = 0, norm = 0;
        int finite = 1;
        for (int i = 0; i < E; i++) {
            err += (double)(x[i] - xr[i]) * (x[i] - xr[i]);
            norm += (double)xr[i] * xr[i];
            finite &= isfinite(x[i]);
        }
        check(rc == 0 && finite && err <= 1e-6 * norm, "decode_layers", "mixed", sqrt(err), sqrt(norm));
        memcpy(x, xr, sizeof x); /* the next position starts both from the same state */
    }
    cfg.n_ctx = 0; /* a bad size is refused, not run */
    check(awq_decode_layers(&cfg, L, NL, 0, x, 2) == -2, "decode_layers refuses", "n_ctx 0", 0, 0);
    printf("decode %s\n", failed ? "FAILED" : "ok");
}

/* the GEMM over interleaved Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q2_K / Q3_K rows (awq_pack + awq_matmul_packed; the variant's own kernel, or the
 * scalar one where it has none) against the scalar table's file-row matmul; and its refusals */
static void check_packed(int isa) {
    enum { R = 40, N = 17 };
    static const int types[6] = {AWQ_Q4_0, AWQ_Q4_1, AWQ_Q5_0, AWQ_Q5_1, AWQ_Q2_K, AWQ_Q3_K};
    for (int ti = 0; ti < 6; ti++) {
        const int t = types[ti];
        const int64_t C = t == AWQ_Q2_K || t == AWQ_Q3_K ? 768 : 544;
        awq_mat_t m = random_mat(t, R, C);
        const int64_t size = awq_packed_bytes(t, R, C);
        uint8_t *wp = malloc(size);
        float *x = malloc(N * C * sizeof(float)), *y = malloc(N * R * sizeof(float)), *yr = malloc(N * R * sizeof(float));
        for (int64_t i = 0; i < N * C; i++) x[i] = frnd();
        for (int i = 0; i < N * R; i++) y[i] = yr[i] = NAN;
        int rc = awq_pack(t, m.w, R, m.row_bytes, C, wp, size);
        rc |= awq_matmul_packed(t, wp, size, R, C, x, N, y, 3);
        awq_set_isa(AWQ_ISA_SCALAR);
        rc |= awq_matmul(t, m.w, R, m.row_bytes, C, x, N, yr, 1);
        awq_set_isa(isa);
        int ok = rc == 0 && size == R * m.row_bytes;
        for (int i = 0; i < N * R; i++) ok &= isfinite(y[i]) && fabsf(y[i] - yr[i]) <= 1e-4f * (fabsf(yr[i]) + 1.0f);
        check(ok, "matmul_packed", type_of(t)->name, rc, 0);
        check(awq_packed_bytes(t, 12, C) == 0 && awq_pack(t, m.w, 12, m.row_bytes, C, wp, size) == -2,
              "pack refuses", "12 rows", 0, 0);
        check(awq_pack(AWQ_Q8_0, m.w, R, m.row_bytes, C, wp, size) == -1 &&
              awq_matmul_packed(t, wp, size, R, C + type_of(t)->elems, x, N, y, 1) == -2 &&
              awq_matmul_packed(t, wp, size - 1, R, C, x, N, y, 1) == -2, "packed refuses", "type/size", 0, 0);
        free(wp); free(x); free(y); free(yr); free((void *)m.w);
    }
    printf("packed %s (own kernels: %d %d %d %d %d %d)\n", failed ? "FAILED" : "ok", awq_packed_gemm_native(AWQ_Q4_0),
           awq_packed_gemm_native(AWQ_Q4_1), awq_packed_gemm_native(AWQ_Q5_0), awq_packed_gemm_native(AWQ_Q5_1),
           awq_packed_gemm_native(AWQ_Q2_K), awq_packed_gemm_native(AWQ_Q3_K));
}

int main(int argc, char **argv) {
    const int isa = argc > 1 ? atoi(argv[1]) : AWQ_ISA_NEON;
    printf("isa %s available=%d best=%s\n", awq_isa_name(isa), awq_isa_available(isa), awq_isa_name(awq_isa_best()));
    if (awq_set_isa(isa) != 0) { printf("0 passed, 1 failed\n"); return 1; }
    const awq_kernels *S = awq_kernels_scalar(), *V = awq_current();
    printf("testing %s against %s\n", V->name, S->name);

    /* activation quantization: byte-exact */
    for (int rep = 0; rep < 20; rep++) {
        float x[512];
        for (int i = 0; i < 512; i++) x[i] = frnd() * (rep % 3 == 2 ? 0.0f : 1.0f + rep);
        if (rep % 5 == 3) x[7] = NAN;                                  /* NaN: d = NaN, zero quants */
        if (rep % 5 == 4) x[300] = -INFINITY;                          /* Inf: likewise */
        if (rep % 7 == 5) for (int i = 0; i < 512; i++) x[i] *= 1e-38f; /* too small for 1/d: zeros */
        uint8_t a[16 * 40], b[16 * 40], c[2 * 292], d[2 * 292];
        S->quantize_q8_32(512, x, a); V->quantize_q8_32(512, x, b);
        check(!memcmp(a, b, sizeof a), "quantize_q8_32", "", 0, 0);
        S->quantize_q8_K(512, x, c); V->quantize_q8_K(512, x, d);
        check(!memcmp(c, d, sizeof c), "quantize_q8_K", "", 0, 0);
    }

    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        const tinfo *T = &TYPES[ti];
        const int failed_before = failed;
        const int64_t cols = T->elems == 256 ? 768 : 544;
        const int64_t row_bytes = cols / T->elems * T->bytes;
        uint8_t *w = malloc(37 * row_bytes);
        float *x = malloc(17 * cols * sizeof(float)), *deq = malloc(cols * sizeof(float));
        uint8_t *xq = malloc(awq_act_row_bytes(T->t, cols));
        /* dot products */
        for (int rep = 0; rep < 30; rep++) {
            random_row(T, cols, w);
            for (int64_t i = 0; i < cols; i++) x[i] = frnd();
            awq_quantize_act(T->t, cols, x, xq); /* the variant's quantizer (checked above) */
            const float ref = S->dot[T->t](cols, w, xq), got = V->dot[T->t](cols, w, xq);
            S->dequant[T->t](cols, w, deq);
            double scale = 0;
            for (int64_t i = 0; i < cols; i++) scale += fabs(deq[i] * x[i]);
            check(fabs(ref - got) <= 2e-5 * scale + 1e-30, "dot", T->name, ref, got);
            float *deq2 = malloc(cols * sizeof(float));
            V->dequant[T->t](cols, w, deq2);
            check(!memcmp(deq, deq2, cols * sizeof(float)), "dequant", T->name, deq[0], deq2[0]);
            free(deq2);
        }
        /* threaded matmul through the dispatcher vs the scalar table: odd rows, n = 1, 3, 17 */
        static const int shapes[][3] = {{1, 1, 1}, {7, 3, 2}, {37, 17, 3}};
        for (int s = 0; s < 3; s++) {
            const int rows = shapes[s][0], n = shapes[s][1], th = shapes[s][2];
            for (int r = 0; r < rows; r++) random_row(T, cols, w + r * row_bytes);
            for (int64_t i = 0; i < n * cols; i++) x[i] = frnd();
            float *y = malloc(n * rows * sizeof(float)), *yr = malloc(n * rows * sizeof(float));
            for (int i = 0; i < n * rows; i++) y[i] = yr[i] = NAN;
            int rc = awq_matmul(T->t, w, rows, row_bytes, cols, x, n, y, th);
            awq_set_isa(AWQ_ISA_SCALAR);
            rc |= awq_matmul(T->t, w, rows, row_bytes, cols, x, n, yr, 1);
            awq_set_isa(isa);
            int ok = rc == 0;
            for (int i = 0; i < n * rows; i++) ok &= isfinite(y[i]) && fabsf(y[i] - yr[i]) <= 1e-4f * (fabsf(yr[i]) + 1.0f);
            check(ok, "matmul", T->name, rc, 0);
            free(y); free(yr);
        }
        free(w); free(x); free(deq); free(xq);
        printf("%s %s\n", T->name, failed == failed_before ? "ok" : "FAILED");
    }
    check_decode(isa);
    check_packed(isa);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
