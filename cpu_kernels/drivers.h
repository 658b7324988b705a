/* Internal helpers shared by the drivers (matmul.c, layer.c); not part of the C API. */
#ifndef AWQ_DRIVERS_H
#define AWQ_DRIVERS_H
#include <stdint.h>
#include <stdlib.h>

#include "kernels.h"

/* 0 if the current kernel table supports type t and a row of `cols` elements takes row_bytes bytes
 * (row_bytes < 0: not checked); -1 unsupported type, -2 bad sizes */
int awq_check_weights(int t, int64_t cols, int64_t row_bytes);

/* activation rows dotr_prep writes on the stack (up to 16320 columns); longer ones go to the heap */
#define AWQ_DOTR_STACK 32768

/* y[r] = row r of w (file rows, row_bytes apart) . xq for r0 <= r < r1 (GEMV): AWQ_DOTR rows per call of the
 * table's dotr where it has one for t (on xq rewritten by its dotr_prep first, where it has one), the rows of a
 * call (r1 - r0) / AWQ_DOTR apart; the rest (and every row without one, or all of them if the heap refuses
 * the rewritten row) through dot */
static inline void awq_gemv_file_rows(const awq_kernels *k, int t, int64_t cols, const uint8_t *w, int64_t row_bytes,
                                      const void *xq, float *y, int64_t r0, int64_t r1) {
    int64_t r = r0;
    const awq_dotr_fn dotr = k->dotr[t];
    if (dotr && r1 - r0 >= AWQ_DOTR) {
        _Alignas(32) uint8_t local[AWQ_DOTR_STACK];
        void *heap = NULL;
        const void *xr = xq;
        if (k->dotr_prep[t]) {
            void *buf = awq_dotr_xbytes(cols) <= AWQ_DOTR_STACK ? (void *)local
                                                                 : (heap = malloc((size_t)awq_dotr_xbytes(cols)));
            if (buf) k->dotr_prep[t](cols, xq, buf);
            xr = buf;
        }
        if (xr) {
            /* the rows of one call q apart (r0 + i + j q, j < AWQ_DOTR): each of the AWQ_DOTR streams then
             * walks its part's rows in order, one long sequential read, which this machine's memory
             * serves better than 4 adjacent rows at a time (dotr prefetches ahead in each stream) */
            const int64_t q = (r1 - r0) / AWQ_DOTR;
            for (int64_t i = 0; i < q; i++) {
                float o[AWQ_DOTR];
                dotr(cols, w + (r0 + i) * row_bytes, q * row_bytes, xr, o);
                for (int j = 0; j < AWQ_DOTR; j++) y[r0 + i + j * q] = o[j];
            }
            r = r0 + AWQ_DOTR * q;
        }
        free(heap);
    }
    const awq_dot_fn dot = k->dot[t];
    for (; r < r1; r++) y[r] = dot(cols, w + r * row_bytes, xq);
}
#endif
