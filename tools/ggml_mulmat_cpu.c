/* Times llama.cpp's CPU matrix product y = W x (ggml_mul_mat, its own kernels and activation quantization)
 * with the process CPU time, so a busy shared machine (time the OS gives to others) does not count.
 * Built and run by tools/bench_gemv.py against .llama.cpp/build/bin's libraries.
 * Usage: ggml_mulmat_cpu TYPE_ID ROWS COLS N REPS THREADS  -> prints "min_cpu_s mean_wall_s" */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ggml-cpu.h"
#include "ggml.h"

static double clock_s(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage: %s TYPE ROWS COLS N REPS THREADS\n", argv[0]); return 2; }
    const enum ggml_type type = (enum ggml_type)atoi(argv[1]);
    const int64_t rows = atoll(argv[2]), cols = atoll(argv[3]), n = atoll(argv[4]);
    const int reps = atoi(argv[5]), threads = atoi(argv[6]);
    ggml_cpu_init();
    const size_t wbytes = ggml_row_size(type, cols) * rows;
    struct ggml_init_params ip = {wbytes + (size_t)(cols + rows) * n * 4 + 64 * 1024 * 1024, NULL, false};
    struct ggml_context *ctx = ggml_init(ip);
    struct ggml_tensor *w = ggml_new_tensor_2d(ctx, type, cols, rows);
    struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, cols, n);
    float *tmp = malloc(sizeof(float) * cols * 64);
    srand(1);
    for (int64_t r0 = 0; r0 < rows; r0 += 64) { /* real blocks: quantize random floats 64 rows at a time */
        const int64_t nr = rows - r0 < 64 ? rows - r0 : 64;
        for (int64_t i = 0; i < nr * cols; i++) tmp[i] = (float)rand() / RAND_MAX - 0.5f;
        ggml_quantize_chunk(type, tmp, (char *)w->data + r0 * ggml_row_size(type, cols), 0, nr, cols, NULL);
    }
    for (int64_t i = 0; i < cols * n; i++) ((float *)x->data)[i] = (float)rand() / RAND_MAX - 0.5f;
    struct ggml_tensor *y = ggml_mul_mat(ctx, w, x);
    struct ggml_cgraph *gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, y);
    ggml_graph_compute_with_ctx(ctx, gf, threads); /* warm-up */
    double best = 1e30, wall = 0;
    for (int i = 0; i < reps; i++) {
        const double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
        ggml_graph_compute_with_ctx(ctx, gf, threads);
        const double c = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        wall += clock_s(CLOCK_MONOTONIC) - w0;
        if (c < best) best = c;
    }
    printf("%.9f %.9f\n", best, wall / reps);
    ggml_free(ctx);
    free(tmp);
    return 0;
}
