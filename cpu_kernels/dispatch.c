/* Run-time ISA choice: what was compiled in (AWQ_HAVE_* from the build) and what this CPU and OS support
 * (cpuid + xgetbv on x86, always NEON on aarch64). The Python side applies AWQ_GGUF_ISA through awq_set_isa. */
#include <stdlib.h>

#include "api.h"
#include "kernels.h"

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#define AWQ_X86 1
#include <cpuid.h>
#endif

static const awq_kernels *g_kernels = 0;
static int g_isa = -1;
static int g_vnni = 0;

#ifdef AWQ_X86
static uint64_t xgetbv0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

/* 0: none, 1: avx2+fma+f16c, 2: avx512 f/bw/vl/dq; *vnni set when AVX512-VNNI is present too */
static int x86_level(int *vnni) {
    unsigned a, b, c, d;
    *vnni = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return 0;
    const uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return 0;
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1;
    if (!(avx2 && fma && f16c)) return 0;
    const int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    if (f && dq && bw && vl && (xcr0 & 0xe6) == 0xe6) {
        *vnni = (c >> 11) & 1;
        return 2;
    }
    return 1;
}
#endif

int awq_isa_available(int isa) {
    int vnni = 0;
    (void)vnni;
    switch (isa) {
    case AWQ_ISA_SCALAR: return 1;
#if defined(AWQ_X86) && defined(AWQ_HAVE_AVX2)
    case AWQ_ISA_AVX2: return x86_level(&vnni) >= 1;
#endif
#if defined(AWQ_X86) && defined(AWQ_HAVE_AVX512)
    case AWQ_ISA_AVX512: return x86_level(&vnni) >= 2;
#endif
#if defined(__aarch64__) && defined(AWQ_HAVE_NEON)
    case AWQ_ISA_NEON: return 1;
#endif
    default: return 0;
    }
}

int awq_isa_best(void) {
    for (int isa = AWQ_NISA - 1; isa > 0; isa--)
        if (awq_isa_available(isa)) return isa;
    return AWQ_ISA_SCALAR;
}

/* an environment switch: set, not empty and not "0" */
static int env_flag(const char *name) {
    const char *v = getenv(name);
    return v && *v && *v != '0';
}

int awq_set_isa(int isa) {
    if (isa < 0 || isa >= AWQ_NISA || !awq_isa_available(isa)) return -1;
    const awq_kernels *k = awq_kernels_scalar();
    g_vnni = 0;
#if defined(AWQ_X86) && defined(AWQ_HAVE_AVX2)
    if (isa == AWQ_ISA_AVX2) k = awq_kernels_avx2();
#endif
#if defined(AWQ_X86) && defined(AWQ_HAVE_AVX512)
    if (isa == AWQ_ISA_AVX512) {
        int vnni = 0;
        x86_level(&vnni);
        k = awq_kernels_avx512();
#ifdef AWQ_HAVE_AVX512VNNI
        /* AWQ_GGUF_NO_VNNI=1 keeps the plain AVX-512 table on a VNNI CPU (to test both) */
        if (vnni && !env_flag("AWQ_GGUF_NO_VNNI")) { k = awq_kernels_avx512vnni(); g_vnni = 1; }
#endif
#ifdef AWQ_HAVE_AVX2
        /* the AVX-512 file has no GEMM kernels (4-row, interleaved) and no multi-row GEMV (dotr) yet: borrow
         * AVX2's (a subset of AVX-512). dotr with its dotr_prep, which shapes the activation for it. */
        static awq_kernels merged;
        merged = *k;
        const awq_kernels *a2 = awq_kernels_avx2();
        for (int t = 0; t < AWQ_NTYPES; t++) {
            if (!merged.dot4[t]) merged.dot4[t] = a2->dot4[t];
            if (!merged.gemm8[t]) merged.gemm8[t] = a2->gemm8[t];
            if (!merged.dotr[t]) {
                merged.dotr[t] = a2->dotr[t];
                merged.dotr_prep[t] = a2->dotr_prep[t];
            }
        }
        k = &merged;
#endif
    }
#endif
#if defined(__aarch64__) && defined(AWQ_HAVE_NEON)
    if (isa == AWQ_ISA_NEON) k = awq_kernels_neon();
#endif
    /* AWQ_GGUF_NO_DOTR=1: the GEMV's file rows one at a time through dot only (to test and time both paths) */
    if (env_flag("AWQ_GGUF_NO_DOTR")) {
        static awq_kernels plain;
        plain = *k;
        memset(plain.dotr, 0, sizeof plain.dotr);
        memset(plain.dotr_prep, 0, sizeof plain.dotr_prep);
        k = &plain;
    }
    g_kernels = k;
    g_isa = isa;
    return 0;
}

int awq_get_isa(void) {
    if (g_isa < 0) awq_set_isa(awq_isa_best());
    return g_isa;
}

const char *awq_isa_name(int isa) {
    static const char *names[AWQ_NISA] = {"scalar", "avx2", "avx512", "neon"};
    return isa >= 0 && isa < AWQ_NISA ? names[isa] : "unknown";
}

const char *awq_kernels_name(void) {
    awq_get_isa();
    return g_kernels->name;
}

const awq_kernels *awq_current(void) {
    if (g_isa < 0) awq_set_isa(awq_isa_best());
    return g_kernels;
}

#ifndef AWQ_BUILD_ID
#define AWQ_BUILD_ID "unknown"
#endif
const char *awq_build_id(void) { return AWQ_BUILD_ID; }
