// Q4_K (GGUF super-block of 256, 144 bytes: fp16 d, fp16 dmin, 12 bytes of packed 6-bit scales and mins for 8
// sub-blocks of 32, then 128 bytes of nibbles), value d * sc_j * q - dmin * m_j.
// In the file, nibble byte 32g + l (g = 0..3, l = 0..31) holds element 64g + l (low nibble, sub-block 2g) and
// element 64g + 32 + l (high nibble, sub-block 2g + 1).
//
// Load-time re-layout (ops.py), so that a chunk is one sub-block with one (scale, min) pair, as a Q4_0 block:
//   p0  [rows][nch][16]  sub-block j's nibbles in Q4_0's order: byte i = element i (low) | element i + 16 (high)
//   p1  [rows][nsb]      d, dmin (two fp16, one 4-byte word), as in the file
//   p2  [rows][nch]      sub-block j's 6-bit scale and min unpacked to two bytes (sc, m)
// 148 bytes per 256 weights instead of 144 (the scales unpacked). Chunk c of a row is sub-block c % 8 of
// super-block c / 8 (nch = 8 nsb), so p0 and p2 are indexed like Q4_0's planes and p1 by (row nch + c) / 8. A
// chunk's weights are d sc q - dmin m: one (A, C) per chunk and one 32-activation block, where the file's order
// needed two of each per 32 nibble bytes and the 6-bit fields decoded per row at run time (both branches
// predicated: ~25 instructions a row-chunk; now 4 byte permutes and 4 FMAs).
#pragma once

#include "common.cuh"

namespace awq {

struct FmtQ4_K {
    static constexpr int kType = 12;  // GGML_TYPE_Q4_K
    // int8-activation GEMV: at most 4 blocks per SM, though 5 fit at 95 registers (mode 12). Alone, the fifth block
    // is faster (x pre-rounded 14336x4096: 12.1 vs 12.6 us); in the GPU runner it slows the fused kernels around
    // each GEMV more than it gains (TinyLlama decode step 659-663 us against 649-652 capped, H100, 2026-11-28).
    static constexpr int kMaxBlocksPerSM = 4;
    struct Raw {
        uint4 q;      // 16 nibble bytes of the sub-block
        uint32_t dm;  // d | dmin << 16 (fp16 bits)
        uint32_t sm;  // sc | m << 8
    };
    struct Prep {
        float A, C;
    };

    static __device__ __forceinline__ void load(Raw& r, const Planes& w, int row, int c, int nch) {
        const size_t blk = static_cast<size_t>(row) * nch + c;
        r.q = ld_stream16(w.p0 + blk * 16);
        r.dm = __ldg(reinterpret_cast<const uint32_t*>(w.p1) + (blk >> 3));  // nch % 8 == 0: super-block blk / 8
        r.sm = ld_u16(w.p2 + blk * 2);
    }

    // d * sc and dmin * m, exactly (at most 17 significant bits): each 6-bit value becomes the float 2^23 + v by
    // one byte permute (0x4B0000vv), then one FMA with -2^23 d; no int-to-float conversion.
    static __device__ __forceinline__ void scales(const Raw& r, float& dsc, float& dmm) {
        const float d = half_bits(r.dm), dmin = half_bits(r.dm >> 16);
        dsc = fmaf(d, __uint_as_float(__byte_perm(r.sm, 0x4B000000u, 0x7650u)), -8388608.0f * d);
        dmm = fmaf(dmin, __uint_as_float(__byte_perm(r.sm, 0x4B000000u, 0x7651u)), -8388608.0f * dmin);
    }

    static __device__ __forceinline__ void prep(Prep& p, const Raw& r) {
        float dsc, dmm;
        scales(r, dsc, dmm);
        p.A = 128.0f * dsc;  // d sc q - dmin m = A (1 + q/128) - (A + dmin m)
        p.C = p.A + dmm;
    }

    static __device__ __forceinline__ void piece(const Raw& r, const Prep& p, int P, float* out) {
        uint32_t a = (P & 1) ? r.q.z : r.q.x;
        uint32_t b = (P & 1) ? r.q.w : r.q.y;
        if (P >> 1) {
            a >>= 4;
            b >>= 4;
        }
        fma4_unit7((a & 0x0F0F0F0Fu) | 0x80808080u, p.A, p.C, out);
        fma4_unit7((b & 0x0F0F0F0Fu) | 0x80808080u, p.A, p.C, out + 4);
    }

    static constexpr bool kFactored = true;
    static __device__ __forceinline__ void units(const Raw& r, int P, float* v) {
        uint32_t a = (P & 1) ? r.q.z : r.q.x;
        uint32_t b = (P & 1) ? r.q.w : r.q.y;
        if (P >> 1) {
            a >>= 4;
            b >>= 4;
        }
        unit7x4((a & 0x0F0F0F0Fu) | 0x80808080u, v);
        unit7x4((b & 0x0F0F0F0Fu) | 0x80808080u, v + 4);
    }
    static __device__ __forceinline__ float scale_a(const Prep& p, int) { return p.A; }
    static __device__ __forceinline__ float scale_c(const Prep& p, int) { return p.C; }

    // int8-activation path (gemv.cuh, modes 4-19): piece P's 8 weights as two words of bytes for dp4a; when
    // q8_hi(P) the bytes hold 16 q (high nibbles masked in place, no shift). The chunk's 4 pieces share (A, C) and
    // one 32-activation block: its sum is dx * (A * dot - C * sum(xq)).
    static constexpr int kQ8Group = 4;
    static constexpr bool kQ8Signed = false;
    static constexpr bool kQ8Sum = true;
    struct Prep8 {
        float A, C;
    };
    static __device__ __forceinline__ void prep8(Prep8& p, const Raw& r) { scales(r, p.A, p.C); }
    static constexpr __device__ bool q8_hi(int P) { return (P >> 1) != 0; }
    static __device__ __forceinline__ void q8_piece(const Raw& r, int P, uint32_t& w0, uint32_t& w1) {
        const uint32_t m = (P >> 1) ? 0xF0F0F0F0u : 0x0F0F0F0Fu;
        w0 = ((P & 1) ? r.q.z : r.q.x) & m;
        w1 = ((P & 1) ? r.q.w : r.q.y) & m;
    }
    static __device__ __forceinline__ float q8_a(const Prep8& p, int) { return p.A; }
    static __device__ __forceinline__ float q8_c(const Prep8& p, int) { return p.C; }

    static __device__ __forceinline__ int col(int c, int P) { return 32 * c + 8 * P; }

    // stream GEMV (gemv_stream.cuh): plane p holds plane_bytes(p) per plane_unit(p) chunks of a row; tiles start at
    // a multiple of 32 chunks, hence at a super-block
    static constexpr int kPlanes = 3;
    static __host__ __device__ constexpr int plane_unit(int p) { return p == 1 ? 8 : 1; }
    static __host__ __device__ constexpr int plane_bytes(int p) { return p == 0 ? 16 : p == 1 ? 4 : 2; }
    static __device__ __forceinline__ void load_tile(Raw& r, const uint8_t* p0, const uint8_t* p1, const uint8_t* p2,
                                                     int j) {
        r.q = *reinterpret_cast<const uint4*>(p0 + 16 * j);
        r.dm = *reinterpret_cast<const uint32_t*>(p1 + 4 * (j >> 3));
        r.sm = *reinterpret_cast<const uint16_t*>(p2 + 2 * j);
    }

    // cp.async ring slot of one row-step of a warp: 32 lanes x (16 nibble bytes, d | dmin, the word holding sc, m)
    static constexpr int kSlot = 32 * 16 + 32 * 4 + 32 * 4;
    static __device__ __forceinline__ void issue(uint8_t* slot, int lane, const Planes& w, int row, int c, int nch) {
        const size_t blk = static_cast<size_t>(row) * nch + c;
        cp_async16(slot + 16 * lane, w.p0 + blk * 16);
        cp_async4(slot + 512 + 4 * lane, w.p1 + (blk >> 3) * 4);
        cp_async4(slot + 640 + 4 * lane, half_word_addr(w.p2, blk));
    }
    static __device__ __forceinline__ void fetch(Raw& r, const uint8_t* slot, int lane, int row, int c, int nch) {
        const size_t blk = static_cast<size_t>(row) * nch + c;
        r.q = *reinterpret_cast<const uint4*>(slot + 16 * lane);
        r.dm = *reinterpret_cast<const uint32_t*>(slot + 512 + 4 * lane);
        r.sm = half_from_word(*reinterpret_cast<const uint32_t*>(slot + 640 + 4 * lane), blk);
    }
};

}  // namespace awq
