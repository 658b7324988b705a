// Q4_K (GGUF super-block of 256, 144 bytes: fp16 d, fp16 dmin, 12 bytes of packed 6-bit scales and mins for 8
// sub-blocks of 32, then 128 bytes of nibbles), value d * sc_j * q - dmin * m_j.
// In the file, nibble byte 32g + l (g = 0..3, l = 0..31) holds element 64g + l (low nibble, sub-block 2g) and
// element 64g + 32 + l (high nibble, sub-block 2g + 1).
//
// Load-time re-layout (ops.py), same 144 bytes per super-block, so that a chunk is one sub-block with one (scale, min)
// pair, as a Q4_0 block: p0 = [rows][nsb][144], each super-block
//   bytes 0..3     d, dmin (two fp16), as in the file
//   bytes 4..11    byte 4 + j: the low 4 bits of sub-block j's scale (low nibble) and min (high nibble)
//   bytes 12..15   bits 4j .. 4j + 3 of that word: the top 2 bits of scale j, then of min j
//   bytes 16..143  sub-block j's nibbles at 16 + 16 j in Q4_0's order: byte i = element i (low) | element i + 16 (high)
// Chunk c of a row is sub-block j = c % 8 of super-block c / 8; its lane loads the 16-byte header (the 8 lanes of a
// super-block read the same 16 bytes) and its 16 nibble bytes, as the file's layout was read. A chunk's weights are
// d sc q - dmin m: one (A, C) pair and one 32-activation block (the file's order needed two of each per 16 nibble
// bytes and decoded the packed 6-bit fields of two sub-blocks per row, both branches predicated: ~25 instructions a
// row-chunk).
#pragma once

#include "common.cuh"

namespace awq {

struct FmtQ4_K {
    static constexpr int kType = 12;  // GGML_TYPE_Q4_K
    struct Raw {
        uint4 h;  // d | dmin << 16, low bits of scales and mins, their top bits
        uint4 q;  // 16 nibble bytes of the sub-block
        int j;    // sub-block 0..7
    };
    struct Prep {
        float A, C;
    };

    static __device__ __forceinline__ void load(Raw& r, const Planes& w, int row, int c, int nch) {
        const uint8_t* sb = w.p0 + (static_cast<size_t>(row) * (nch >> 3) + (c >> 3)) * 144;
        r.j = c & 7;
        r.h = ld_stream16(sb);
        r.q = ld_stream16(sb + 16 + 16 * r.j);
    }

    // d * sc_j and dmin * m_j, exactly (at most 17 significant bits): the 6-bit value v becomes the float 2^23 + v
    // (0x4B0000vv), then one FMA with -2^23 d; no int-to-float conversion.
    static __device__ __forceinline__ void scales(const Raw& r, float& dsc, float& dmm) {
        const float d = half_bits(r.h.x), dmin = half_bits(r.h.x >> 16);
        const uint32_t lo = __byte_perm(r.h.y, r.h.z, r.j);  // byte 0: scale | min << 4, low bits
        const uint32_t hi = r.h.w >> (4 * r.j);                // bits 0..3: top bits of scale, of min
        const uint32_t sc = (lo & 0x0Fu) | ((hi & 0x3u) << 4), mn = ((lo >> 4) & 0x0Fu) | ((hi & 0xCu) << 2);
        dsc = fmaf(d, __uint_as_float(0x4B000000u | sc), -8388608.0f * d);
        dmm = fmaf(dmin, __uint_as_float(0x4B000000u | mn), -8388608.0f * dmin);
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

    // stream GEMV (gemv_stream.cuh): one plane of 144-byte super-blocks (8 chunks each); tiles start at a super-block
    static constexpr int kPlanes = 1;
    static __host__ __device__ constexpr int plane_unit(int) { return 8; }
    static __host__ __device__ constexpr int plane_bytes(int) { return 144; }
    static __device__ __forceinline__ void load_tile(Raw& r, const uint8_t* p0, const uint8_t*, const uint8_t*, int j) {
        const uint8_t* sb = p0 + 144 * (j >> 3);
        r.j = j & 7;
        r.h = *reinterpret_cast<const uint4*>(sb);
        r.q = *reinterpret_cast<const uint4*>(sb + 16 + 16 * r.j);
    }

    // cp.async ring slot: 32 lanes x (the 16-byte header, 16 nibble bytes)
    static constexpr int kSlot = 32 * 32;
    static __device__ __forceinline__ void issue(uint8_t* slot, int lane, const Planes& w, int row, int c, int nch) {
        const uint8_t* sb = w.p0 + (static_cast<size_t>(row) * (nch >> 3) + (c >> 3)) * 144;
        cp_async16(slot + 16 * lane, sb);
        cp_async16(slot + 512 + 16 * lane, sb + 16 + 16 * (c & 7));
    }
    static __device__ __forceinline__ void fetch(Raw& r, const uint8_t* slot, int lane, int row, int c, int nch) {
        r.j = c & 7;
        r.h = *reinterpret_cast<const uint4*>(slot + 16 * lane);
        r.q = *reinterpret_cast<const uint4*>(slot + 512 + 16 * lane);
    }
};

}  // namespace awq
