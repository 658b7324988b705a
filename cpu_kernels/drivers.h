/* Internal helpers shared by the drivers (matmul.c, layer.c); not part of the C API. */
#ifndef AWQ_DRIVERS_H
#define AWQ_DRIVERS_H
#include <stdint.h>

/* 0 if the current kernel table supports type t and a row of `cols` elements takes row_bytes bytes
 * (row_bytes < 0: not checked); -1 unsupported type, -2 bad sizes */
int awq_check_weights(int t, int64_t cols, int64_t row_bytes);
#endif
