/* Threaded drivers over the chosen kernel table: activation quantization, matrix products
 * (n = 1: GEMV, n > 1: GEMM tiled so a few weight rows stay in cache across tokens) and get_rows. */
#include <pthread.h>
#include <stdlib.h>

#include "api.h"
#include "kernels.h"
#include "pool.h"
#include "drivers.h"

/* elements and bytes of one weight block; 0 for types we do not handle */
static void type_block(int t, int64_t *elems, int64_t *bytes) {
    static const int16_t E[AWQ_NTYPES] = {1, 1, 32, 32, 0, 0, 32, 32, 32, 0, 256, 256, 256, 256, 256};
    static const int16_t B[AWQ_NTYPES] = {4, 2, 18, 20, 0, 0, 22, 24, 34, 0, 84, 110, 144, 176, 210};
    *elems = (t >= 0 && t < AWQ_NTYPES) ? E[t] : 0;
    *bytes = (t >= 0 && t < AWQ_NTYPES) ? B[t] : 0;
}

static int is_k(int t) { return t >= AWQ_Q2_K && t <= AWQ_Q6_K; }
static int is_float(int t) { return t == AWQ_F32 || t == AWQ_F16; }

int64_t awq_act_row_bytes(int t, int64_t cols) {
    int64_t e, b;
    type_block(t, &e, &b);
    if (!e || cols <= 0 || cols % e) return 0;
    if (is_float(t)) return cols * 4;
    return is_k(t) ? cols / QKK * (int64_t)sizeof(act_q8_K) : cols / QK32 * (int64_t)sizeof(act_q8_32);
}

/* checks the type and that a row of `cols` elements takes row_bytes bytes */
static int check(int t, int64_t cols, int64_t row_bytes) {
    int64_t e, b;
    type_block(t, &e, &b);
    if (!e || !awq_current()->dot[t]) return -1;
    if (cols <= 0 || cols % e || (row_bytes >= 0 && row_bytes != cols / e * b)) return -2;
    return 0;
}

int awq_check_weights(int t, int64_t cols, int64_t row_bytes) { return check(t, cols, row_bytes); }

int awq_quantize_act(int t, int64_t cols, const float *x, void *xq) {
    int rc = check(t, cols, -1);
    if (rc) return rc;
    const awq_kernels *k = awq_current();
    if (is_float(t)) memcpy(xq, x, (size_t)cols * 4);
    else if (is_k(t)) k->quantize_q8_K(cols, x, xq);
    else k->quantize_q8_32(cols, x, xq);
    return 0;
}

int awq_vec_dot(int t, int64_t cols, const void *w, const void *xq, float *out) {
    int rc = check(t, cols, -1);
    if (rc) return rc;
    *out = awq_current()->dot[t](cols, w, xq);
    return 0;
}

/* ---- row-parallel jobs on the worker pool (pool.c) ---------------------------------------------- */

typedef struct job job_t;
typedef void (*work_fn)(const job_t *, int64_t r0, int64_t r1);

struct job {
    const awq_kernels *k;
    int t;
    const uint8_t *w;
    int64_t rows, row_bytes, cols;
    const uint8_t *xq;     /* n quantized activation rows of xbytes each */
    int64_t n, xbytes;
    float *y;
    const int64_t *ids;
    work_fn fn;
    awq_gemm8_fn gemm8;    /* awq_matmul_packed only */
};

static void trampoline(void *ctx, int64_t r0, int64_t r1) { ((const job_t *)ctx)->fn((const job_t *)ctx, r0, r1); }

static int fork_join(const job_t *job, int64_t total, int nthreads) {
    return awq_parallel_for(trampoline, (void *)job, total, nthreads);
}

/* rows in tiles of ROW_TILE so that each tile's weights are reused from cache across the n tokens */
#define ROW_TILE 16

static void mm_rows(const job_t *j, int64_t r0, int64_t r1) {
    if (j->n == 1) {
        awq_gemv_file_rows(j->k, j->t, j->cols, j->w, j->row_bytes, j->xq, j->y, r0, r1);
        return;
    }
    const awq_dot_fn dot = j->k->dot[j->t];
    const awq_dot4_fn dot4 = j->k->dot4[j->t];
    for (int64_t rb = r0; rb < r1; rb += ROW_TILE) {
        const int64_t re = rb + ROW_TILE < r1 ? rb + ROW_TILE : r1;
        int64_t i = 0;
        if (dot4)
            for (; i + 4 <= j->n; i += 4) {
                const uint8_t *x = j->xq + i * j->xbytes;
                float *y = j->y + i * j->rows;
                for (int64_t r = rb; r < re; r++) {
                    float o[4];
                    dot4(j->cols, j->w + r * j->row_bytes, x, j->xbytes, o);
                    y[r] = o[0]; y[r + j->rows] = o[1]; y[r + 2 * j->rows] = o[2]; y[r + 3 * j->rows] = o[3];
                }
            }
        for (; i < j->n; i++) {
            const uint8_t *x = j->xq + i * j->xbytes;
            float *y = j->y + i * j->rows;
            for (int64_t r = rb; r < re; r++) y[r] = dot(j->cols, j->w + r * j->row_bytes, x);
        }
    }
}

static void quant_rows(const job_t *j, int64_t r0, int64_t r1) {
    /* here "rows" are activation rows: j->y is the float input, j->xq the output */
    const float *x = (const float *)j->y;
    for (int64_t i = r0; i < r1; i++) {
        uint8_t *q = (uint8_t *)j->xq + i * j->xbytes;
        if (is_k(j->t)) j->k->quantize_q8_K(j->cols, x + i * j->cols, q);
        else j->k->quantize_q8_32(j->cols, x + i * j->cols, q);
    }
}

/* Quantize the job's n activation rows x into a new buffer (*buf, freed by the caller) and point j->xq at it. */
static int quantize_activations(job_t *j, const float *x, int nthreads, uint8_t **buf) {
    *buf = malloc((size_t)(j->n * j->xbytes));
    if (!*buf) return -3; /* the caller's free(NULL) is a no-op */
    job_t q = *j;
    q.xq = *buf;
    q.y = (float *)x;
    q.fn = quant_rows;
    j->xq = *buf;
    return fork_join(&q, j->n, j->n >= 4 ? nthreads : 1);
}

int awq_matmul(int t, const void *w, int64_t rows, int64_t row_bytes, int64_t cols, const float *x,
               int64_t n, float *y, int nthreads) {
    int rc = check(t, cols, row_bytes);
    if (rc) return rc;
    if (rows < 0 || n < 0) return -2;
    if (rows == 0 || n == 0) return 0;
    job_t j = {awq_current(), t, w, rows, row_bytes, cols, 0, n, awq_act_row_bytes(t, cols), y, 0, mm_rows, 0};
    uint8_t *buf = 0;
    if (is_float(t)) {
        j.xq = (const uint8_t *)x;
    } else {
        rc = quantize_activations(&j, x, nthreads, &buf);
    }
    if (!rc) rc = fork_join(&j, rows, nthreads);
    free(buf);
    return rc;
}

/* ---- Q4_0 / Q4_1 / Q5_0 / Q5_1 rows interleaved by 8 (blk_q4_0x8 ... blk_q5_1x8) ---------------- */

static int packable(int t) {
    return t == AWQ_Q4_0 || t == AWQ_Q4_1 || t == AWQ_Q5_0 || t == AWQ_Q5_1 || t == AWQ_Q2_K || t == AWQ_Q3_K;
}

int awq_packed_gemm_native(int t) { return t >= 0 && t < AWQ_NTYPES && awq_current()->gemm8[t] != 0; }

int64_t awq_packed_bytes(int t, int64_t rows, int64_t cols) {
    int64_t e, b;
    type_block(t, &e, &b);
    if (!packable(t) || rows <= 0 || rows % 8 || cols <= 0 || cols % e) return 0;
    return rows * (cols / e) * b;
}

/* one super-block of 8 Q2_K / Q3_K rows (src: row 0's block, rows row_bytes apart) into blk_q2_Kx8 / blk_q3_Kx8 */
static void pack_k8(int t, const uint8_t *src, int64_t row_bytes, uint8_t *dst) {
    if (t == AWQ_Q2_K) {
        blk_q2_Kx8 *o = (blk_q2_Kx8 *)(void *)dst;
        memset(o, 0, sizeof *o);
        for (int r = 0; r < 8; r++) {
            const blk_q2_K *b = (const blk_q2_K *)(const void *)(src + r * row_bytes);
            o->d[r] = b->d;
            o->dmin[r] = b->dmin;
            for (int s = 0; s < 16; s++) o->sm[awq_x8k_sc_at(r, s)] = b->scales[s];
            for (int e = 0; e < QKK; e++) {
                int sh;
                const int at = awq_q2x8_at(r, e, &sh);
                o->qs[at] |= (uint8_t)(((b->qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) << sh);
            }
        }
        return;
    }
    blk_q3_Kx8 *o = (blk_q3_Kx8 *)(void *)dst;
    uint8_t c[128];
    memset(o, 0, sizeof *o);
    for (int r = 0; r < 8; r++) {
        const blk_q3_K *b = (const blk_q3_K *)(const void *)(src + r * row_bytes);
        int8_t sc[16];
        o->d[r] = b->d;
        awq_q3k_scales(b->scales, sc);
        for (int s = 0; s < 16; s++) c[awq_x8k_sc_at(r, s)] = (uint8_t)((sc[s] & 0x3F) << 2);
        for (int e = 0; e < QKK; e++) {
            const int h = e / 128, j = (e % 128) / 32, l = e % 32;
            const int q = ((b->qs[32 * h + l] >> (2 * j)) & 3) | (((b->hmask[l] >> (4 * h + j)) & 1) << 2);
            const int s = e / 16, u = 4 * (s % 2) + (e % 16) / 4, at = 96 * (s / 2) + 4 * r + e % 4;
            if (u < 6) {
                o->qs[at + 32 * (u / 2)] |= (uint8_t)(q << (4 * (u % 2)));
            } else {
                const int bit = u == 6 ? 3 : 7;
                for (int v = 0; v < 3; v++) o->qs[at + 32 * v] |= (uint8_t)(((q >> v) & 1) << bit);
            }
        }
    }
    for (int j = 0; j < 96; j++) o->sc[j] = (uint8_t)((c[j] & 0xFC) | ((c[96 + j % 32] >> (6 - 2 * (j / 32))) & 3));
}

int awq_pack(int t, const void *w, int64_t rows, int64_t row_bytes, int64_t cols, void *out, int64_t out_bytes) {
    if (!packable(t)) return -1;
    const int rc = check(t, cols, row_bytes);
    if (rc) return rc;
    if (out_bytes <= 0 || out_bytes != awq_packed_bytes(t, rows, cols)) return -2;
    if (is_k(t)) {
        const int64_t nb = cols / QKK, bs = t == AWQ_Q2_K ? (int64_t)sizeof(blk_q2_Kx8) : (int64_t)sizeof(blk_q3_Kx8);
        for (int64_t g = 0; g < rows / 8; g++)
            for (int64_t b = 0; b < nb; b++)
                pack_k8(t, (const uint8_t *)w + 8 * g * row_bytes + b * bs / 8, row_bytes, (uint8_t *)out + (g * nb + b) * bs);
        return 0;
    }
    const int64_t nb = cols / QK32;
    /* a file block: d (and m) first, then (5-bit types) 4 bytes of qh, then 16 of qs; the packed block: the 8
     * d, (the 8 m), (the 8 regrouped qh words), then qs */
    const int has_m = t == AWQ_Q4_1 || t == AWQ_Q5_1, has_h = t == AWQ_Q5_0 || t == AWQ_Q5_1;
    int64_t elems, src_bytes;
    type_block(t, &elems, &src_bytes);
    const size_t src_qh = awq_blk32_qh_at(has_m), src_qs = awq_blk32_qs_at(has_m, has_h);
    const size_t dst_bytes = awq_x8_bytes(has_m, has_h), dst_qh = awq_x8_qh_at(has_m);
    const size_t dst_qs = awq_x8_qs_at(has_m, has_h);
    uint8_t *o = out;
    for (int64_t g = 0; g < rows / 8; g++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *dst = o + (g * nb + b) * dst_bytes;
            uint32_t qhw[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int r = 0; r < 8; r++) {
                const uint8_t *src = (const uint8_t *)w + (8 * g + r) * row_bytes + b * src_bytes;
                memcpy(dst + 2 * r, src, 2);                       /* d */
                if (has_m) memcpy(dst + 16 + 2 * r, src + 2, 2);   /* m */
                for (int j = 0; j < 4; j++) memcpy(dst + dst_qs + 32 * j + 4 * r, src + src_qs + 4 * j, 4);
                if (has_h) {
                    uint32_t qh;
                    memcpy(&qh, src + src_qh, 4);
                    for (int v = 0; v < 8; v++) qhw[v] |= ((qh >> (4 * v)) & 0xFu) << (4 * r);
                }
            }
            if (has_h) memcpy(dst + dst_qh, qhw, sizeof qhw);
        }
    return 0;
}

/* groups of 8 rows in tiles of GROUP_TILE, each tile's weights reused from cache across the n tokens */
#define GROUP_TILE 2

static void mm_packed(const job_t *j, int64_t g0, int64_t g1) {
    const int64_t gbytes = 8 * j->row_bytes; /* a group of 8 rows takes the bytes of 8 file rows */
    for (int64_t gb = g0; gb < g1; gb += GROUP_TILE) {
        const int64_t ge = gb + GROUP_TILE < g1 ? gb + GROUP_TILE : g1;
        for (int64_t i = 0; i < j->n; i += 4) {
            const int nx = j->n - i < 4 ? (int)(j->n - i) : 4;
            for (int64_t g = gb; g < ge; g++)
                j->gemm8(j->cols, j->w + g * gbytes, j->xq + i * j->xbytes, j->xbytes, nx, j->y + i * j->rows + 8 * g,
                         j->rows);
        }
    }
}

int awq_matmul_packed(int t, const void *wp, int64_t wp_bytes, int64_t rows, int64_t cols, const float *x,
                      int64_t n, float *y, int nthreads) {
    if (!packable(t)) return -1;
    int rc = check(t, cols, -1);
    if (rc) return rc;
    if (n < 0 || wp_bytes <= 0 || wp_bytes != awq_packed_bytes(t, rows, cols)) return -2;
    if (n == 0) return 0;
    const awq_kernels *k = awq_current();
    job_t j = {k, t, wp, rows, awq_packed_bytes(t, 8, cols) / 8, cols, 0, n, awq_act_row_bytes(t, cols), y, 0,
               mm_packed, k->gemm8[t]};
    /* an ISA without its own interleaved kernel (the ISA was switched after packing): the scalar reference */
    if (!j.gemm8) j.gemm8 = awq_kernels_scalar()->gemm8[t];
    uint8_t *buf = 0;
    rc = quantize_activations(&j, x, nthreads, &buf);
    if (!rc) rc = fork_join(&j, rows / 8, nthreads);
    free(buf);
    return rc;
}

static void rows_deq(const job_t *j, int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++)
        j->k->dequant[j->t](j->cols, j->w + j->ids[i] * j->row_bytes, j->y + i * j->cols);
}

int awq_get_rows(int t, const void *w, int64_t rows, int64_t row_bytes, int64_t cols, const int64_t *ids,
                 int64_t n_ids, float *out, int nthreads) {
    int rc = check(t, cols, row_bytes);
    if (rc) return rc;
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= rows) return -2;
    if (n_ids <= 0) return n_ids < 0 ? -2 : 0;
    job_t j = {awq_current(), t, w, rows, row_bytes, cols, 0, 0, 0, out, ids, rows_deq, 0};
    return fork_join(&j, n_ids, n_ids * cols >= (1 << 16) ? nthreads : 1);
}

/* ---- bandwidth probe: the same fork-join, each thread sums its share of 64-bit words -------------- */

typedef struct { job_t job; uint64_t total; } read_job_t;

static void read_slice(const job_t *j, int64_t r0, int64_t r1) {
    /* rows = 4 KiB pages here */
    const uint64_t *p = (const uint64_t *)j->w;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int64_t i = r0 * 512; i < r1 * 512; i += 4) { s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3]; }
    __atomic_fetch_add(&((read_job_t *)j)->total, s0 + s1 + s2 + s3, __ATOMIC_RELAXED);
}

uint64_t awq_stream_read(const void *p, int64_t bytes, int nthreads) {
    read_job_t r;
    memset(&r, 0, sizeof r);
    r.job.w = p;
    r.job.rows = bytes / 4096;
    r.job.fn = read_slice;
    if (fork_join(&r.job, r.job.rows, nthreads)) return 0;
    return r.total;
}
