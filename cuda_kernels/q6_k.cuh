// Q6_K (GGUF super-block of 256, 210 bytes: ql[128] low nibbles, qh[64] high 2 bits, int8 scales[16] of
// sub-blocks of 16, fp16 d), value d * sc * (q - 32). In the file, for half n (0, 1) of the super-block, l = 0..31:
//   element 128n + l      = ql[64n + l] & 15 | (qh[32n + l] >> 0 & 3) << 4,  scale sc[8n + l/16]
//   element 128n + 32 + l = ql[64n + 32 + l] & 15 | (qh >> 2 & 3) << 4,      scale sc[8n + l/16 + 2]
//   element 128n + 64 + l = ql[64n + l] >> 4 | (qh >> 4 & 3) << 4,           scale sc[8n + l/16 + 4]
//   element 128n + 96 + l = ql[64n + 32 + l] >> 4 | (qh >> 6 & 3) << 4,      scale sc[8n + l/16 + 6]
//
// Load-time re-layout (ops.py), the same 210 bytes per super-block, so that a chunk is 32 consecutive weights (one
// activation block, two scales) read by 4 loads:
//   p0  [rows][nch / 2][48]  per pair of chunks: the low nibbles of chunk 2k (16 bytes, Q4_0's order: byte i = element
//                            i | element i + 16 << 4), of chunk 2k + 1, then the top 2 bits of chunk 2k (8 bytes), of 2k + 1
//   p1  [rows][nch][2]       the chunk's two int8 scales (elements 0..15, 16..31): the file's scales[16] as they are
//   p2  [rows][nsb]          d (fp16 bits)
// The 8 top-bit bytes of a chunk are two words H0, H1: byte i of Hk holds the top 2 bits of elements 4k + i, + 8,
// + 16, + 24 at bits 0, 2, 4, 6, so piece P's (elements 8P .. 8P + 7) land in bits 4..5 of each byte by one shift.
// Piece P = elements 8P .. 8P + 7 of the chunk; pieces 0, 1 take scale 0, pieces 2, 3 scale 1.
// (Until this layout: a chunk was 4 pieces of 8 from 4 different 32-element ranges, 4 scales and 4 activation blocks
// a chunk, 5 loads.)
#pragma once

#include "common.cuh"

namespace awq {

struct FmtQ6_K {
    static constexpr int kType = 14;  // GGML_TYPE_Q6_K
    struct Raw {
        uint4 lo;     // low nibbles
        uint2 hi;     // H0, H1
        uint32_t sc;  // scale 0 | scale 1 << 8 (int8 bits)
        uint32_t d;
    };
    struct Prep {
        float A[2], C[2];
    };

    static __device__ __forceinline__ const uint8_t* pair(const Planes& w, size_t blk) { return w.p0 + (blk >> 1) * 48; }

    static __device__ __forceinline__ void load(Raw& r, const Planes& w, int row, int c, int nch) {
        const size_t blk = static_cast<size_t>(row) * nch + c;  // nch is even: chunk pairs never straddle rows
        const uint8_t* p = pair(w, blk);
        r.lo = ld_stream16(p + 16 * (blk & 1));
        r.hi = ld_stream8(p + 32 + 8 * (blk & 1));
        r.sc = ld_u16(w.p1 + blk * 2);
        r.d = ld_u16(w.p2 + (blk >> 3) * 2);  // nch % 8 == 0: super-block blk / 8
    }

    // d * sc_k exactly (an fp16 times an int8: at most 19 significant bits): the byte b = sc ^ 0x80 (= sc + 128, 0..255)
    // becomes the float 2^23 + b by one permute; one FMA with -2^23 d gives d b exactly, and d b - 128 d = d sc is
    // exact too. No int-to-float conversion.
    static __device__ __forceinline__ float dscale(const Raw& r, float d, int k) {
        const uint32_t b = __byte_perm(r.sc ^ 0x8080u, 0x4B000000u, k ? 0x7651u : 0x7650u);
        return fmaf(-128.0f, d, fmaf(d, __uint_as_float(b), -8388608.0f * d));
    }

    static __device__ __forceinline__ void prep(Prep& p, const Raw& r) {
        const float d = half_bits(r.d);
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const float ds = dscale(r, d, k);
            p.A[k] = 128.0f * ds;  // d sc (q - 32) = 128 d sc (1 + q/128) - 160 d sc, both exact
            p.C[k] = 160.0f * ds;
        }
    }

    // Word k (0, 1) of piece P: the 4 six-bit values of elements 8P + 4k .. + 3, one per byte (bits 0..5).
    static __device__ __forceinline__ uint32_t word6(const Raw& r, int P, int k) {
        const uint32_t l = (P & 1) ? (k ? r.lo.w : r.lo.z) : (k ? r.lo.y : r.lo.x);
        const uint32_t h = k ? r.hi.y : r.hi.x;
        const uint32_t lo4 = ((P >> 1) ? (l >> 4) : l) & 0x0F0F0F0Fu;
        const uint32_t hi2 = (P == 3 ? (h >> 2) : (h << (4 - 2 * P))) & 0x30303030u;
        return lo4 | hi2;
    }

    static __device__ __forceinline__ void piece(const Raw& r, const Prep& p, int P, float* out) {
        fma4_unit7(word6(r, P, 0) | 0x80808080u, p.A[P >> 1], p.C[P >> 1], out);
        fma4_unit7(word6(r, P, 1) | 0x80808080u, p.A[P >> 1], p.C[P >> 1], out + 4);
    }

    static constexpr bool kFactored = true;
    static __device__ __forceinline__ void units(const Raw& r, int P, float* v) {
        unit7x4(word6(r, P, 0) | 0x80808080u, v);
        unit7x4(word6(r, P, 1) | 0x80808080u, v + 4);
    }
    static __device__ __forceinline__ float scale_a(const Prep& p, int P) { return p.A[P >> 1]; }
    static __device__ __forceinline__ float scale_c(const Prep& p, int P) { return p.C[P >> 1]; }

    // int8-activation path (gemv.cuh): piece P's 8 six-bit values as two words of bytes for dp4a; a group of 2
    // pieces shares a scale (16 weights); both groups of a chunk share its 32-activation block: dx * (A * dot - C *
    // sum(xq)) per group.
    static constexpr int kQ8Group = 2;
    static constexpr bool kQ8Signed = false;
    static constexpr bool kQ8Sum = true;
    struct Prep8 {
        float A[2], C[2];
    };
    static __device__ __forceinline__ void prep8(Prep8& p, const Raw& r) {
        const float d = half_bits(r.d);
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            p.A[k] = dscale(r, d, k);  // d sc (q - 32)
            p.C[k] = 32.0f * p.A[k];
        }
    }
    static constexpr __device__ bool q8_hi(int) { return false; }
    static __device__ __forceinline__ void q8_piece(const Raw& r, int P, uint32_t& w0, uint32_t& w1) {
        w0 = word6(r, P, 0);
        w1 = word6(r, P, 1);
    }
    static __device__ __forceinline__ float q8_a(const Prep8& p, int g) { return p.A[g]; }
    static __device__ __forceinline__ float q8_c(const Prep8& p, int g) { return p.C[g]; }

    static __device__ __forceinline__ int col(int c, int P) { return 32 * c + 8 * P; }

    // stream GEMV (gemv_stream.cuh): plane p holds plane_bytes(p) per plane_unit(p) chunks of a row; tiles start at a
    // multiple of 32 chunks
    static constexpr int kPlanes = 3;
    static __host__ __device__ constexpr int plane_unit(int p) { return p == 0 ? 2 : p == 1 ? 1 : 8; }
    static __host__ __device__ constexpr int plane_bytes(int p) { return p == 0 ? 48 : 2; }
    static __device__ __forceinline__ void load_tile(Raw& r, const uint8_t* p0, const uint8_t* p1, const uint8_t* p2,
                                                     int j) {
        const uint8_t* p = p0 + 48 * (j >> 1);
        r.lo = *reinterpret_cast<const uint4*>(p + 16 * (j & 1));
        r.hi = *reinterpret_cast<const uint2*>(p + 32 + 8 * (j & 1));
        r.sc = *reinterpret_cast<const uint16_t*>(p1 + 2 * j);
        r.d = *reinterpret_cast<const uint16_t*>(p2 + 2 * (j >> 3));
    }

    // cp.async ring slot: 32 lanes x (16 low-nibble bytes, 8 top-bit bytes, the word holding the scales, the word
    // holding d)
    static constexpr int kSlot = 32 * 16 + 32 * 8 + 32 * 4 + 32 * 4;
    static __device__ __forceinline__ void issue(uint8_t* slot, int lane, const Planes& w, int row, int c, int nch) {
        const size_t blk = static_cast<size_t>(row) * nch + c;
        const uint8_t* p = pair(w, blk);
        cp_async16(slot + 16 * lane, p + 16 * (blk & 1));
        cp_async8(slot + 512 + 8 * lane, p + 32 + 8 * (blk & 1));
        cp_async4(slot + 768 + 4 * lane, half_word_addr(w.p1, blk));
        cp_async4(slot + 896 + 4 * lane, half_word_addr(w.p2, blk >> 3));
    }
    static __device__ __forceinline__ void fetch(Raw& r, const uint8_t* slot, int lane, int row, int c, int nch) {
        const size_t blk = static_cast<size_t>(row) * nch + c;
        r.lo = *reinterpret_cast<const uint4*>(slot + 16 * lane);
        r.hi = *reinterpret_cast<const uint2*>(slot + 512 + 8 * lane);
        r.sc = half_from_word(*reinterpret_cast<const uint32_t*>(slot + 768 + 4 * lane), blk);
        r.d = half_from_word(*reinterpret_cast<const uint32_t*>(slot + 896 + 4 * lane), blk >> 3);
    }
};

}  // namespace awq
