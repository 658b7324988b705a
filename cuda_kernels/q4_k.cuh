// Q4_K (GGUF super-block of 256, 144 bytes: fp16 d, fp16 dmin, 12 bytes of packed 6-bit scales and mins for 8
// sub-blocks of 32, then 128 bytes of nibbles), value d * sc_j * q - dmin * m_j.
// Nibble byte 32g + l (g = 0..3, l = 0..31) holds element 64g + l (low nibble, sub-block 2g) and element
// 64g + 32 + l (high nibble, sub-block 2g + 1).
//
// Read straight from the file's bytes: p0 = [rows][nsb][144] (144 is a multiple of 16, so the loads align).
// Chunk c of a row is super-block c / 8, part t = c % 8: nibble bytes 16t .. 16t + 15, i.e. g = t / 2 and
// l = 16 (t % 2) + 0..15. Pieces: 0 = low nibbles of bytes 0..7, 1 = low of 8..15, 2 = high of 0..7,
// 3 = high of 8..15. The 8 lanes of one super-block all read its 16-byte header (one sector, broadcast).
#pragma once

#include "common.cuh"

namespace awq {

struct FmtQ4_KW;

struct FmtQ4_K {
    static constexpr int kType = 12;  // GGML_TYPE_Q4_K
    using Wide = FmtQ4_KW;  // the int8-activation walk over 64-weight chunks (modes 16-19)
    struct Raw {
        uint4 h;  // d, dmin, scales[0..11]
        uint4 q;  // 16 nibble bytes
        int t;
    };
    struct Prep {
        float A0, C0, A1, C1;  // low nibbles (sub-block 2g), high nibbles (2g + 1)
    };

    static __device__ __forceinline__ void load(Raw& r, const Planes& w, int row, int c, int nch) {
        const uint8_t* sb = w.p0 + (static_cast<size_t>(row) * (nch >> 3) + (c >> 3)) * 144;
        r.t = c & 7;
        r.h = ld_stream16(sb);
        r.q = ld_stream16(sb + 16 + 16 * r.t);
    }

    // ggml's get_scale_min_k4(j) on the scale bytes s0 (0..3), s1 (4..7), s2 (8..11).
    static __device__ __forceinline__ void scale_min(int j, uint32_t s0, uint32_t s1, uint32_t s2, float& sc,
                                                     float& m) {
        const int k = (j & 3) * 8;
        const uint32_t b0 = (s0 >> k) & 0xFFu, b1 = (s1 >> k) & 0xFFu, b2 = (s2 >> k) & 0xFFu;
        uint32_t isc, im;
        if (j < 4) {
            isc = b0 & 63u;
            im = b1 & 63u;
        } else {
            isc = (b2 & 0xFu) | ((b0 >> 6) << 4);
            im = (b2 >> 4) | ((b1 >> 6) << 4);
        }
        sc = static_cast<float>(isc);
        m = static_cast<float>(im);
    }

    static __device__ __forceinline__ void prep(Prep& p, const Raw& r) {
        const float d = half_bits(r.h.x), dmin = half_bits(r.h.x >> 16);
        const int j = (r.t >> 1) * 2;
        float sc, m;
        scale_min(j, r.h.y, r.h.z, r.h.w, sc, m);
        p.A0 = 128.0f * (d * sc);  // d sc q - dmin m = A (1 + q/128) - (A + dmin m)
        p.C0 = p.A0 + dmin * m;
        scale_min(j + 1, r.h.y, r.h.z, r.h.w, sc, m);
        p.A1 = 128.0f * (d * sc);
        p.C1 = p.A1 + dmin * m;
    }

    static __device__ __forceinline__ void piece(const Raw& r, const Prep& p, int P, float* out) {
        uint32_t a = (P & 1) ? r.q.z : r.q.x;
        uint32_t b = (P & 1) ? r.q.w : r.q.y;
        const float A = (P >> 1) ? p.A1 : p.A0, C = (P >> 1) ? p.C1 : p.C0;
        if (P >> 1) {
            a >>= 4;
            b >>= 4;
        }
        fma4_unit7((a & 0x0F0F0F0Fu) | 0x80808080u, A, C, out);
        fma4_unit7((b & 0x0F0F0F0Fu) | 0x80808080u, A, C, out + 4);
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
    static __device__ __forceinline__ float scale_a(const Prep& p, int P) { return (P >> 1) ? p.A1 : p.A0; }
    static __device__ __forceinline__ float scale_c(const Prep& p, int P) { return (P >> 1) ? p.C1 : p.C0; }

    // int8-activation path (gemv.cuh, modes 4/5): piece P's 8 weights as two words of bytes for dp4a; when
    // q8_hi(P) the bytes hold 16 q (high nibbles masked in place, no shift). A group of kQ8Group pieces shares
    // (A, C) and one 32-activation block: its sum is dx * (A * dot - C * sum(xq)).
    static constexpr int kQ8Group = 2;  // pieces 0, 1: sub-block 2g (low nibbles); 2, 3: 2g + 1 (high)
    static constexpr bool kQ8Signed = false;
    static constexpr bool kQ8Sum = true;
    struct Prep8 {
        float A0, C0, A1, C1;
    };
    // get_scale_min_k4 of sub-blocks j = 2 (t / 2) and j + 1 for 4 sub-blocks at once, bytewise: scales 0..3 are
    // the low 6 bits of bytes 0..3 (mins: 4..7); scales 4..7 are the low nibbles of bytes 8..11 with the top 2
    // bits of bytes 0..3 above them (mins: high nibbles, bytes 4..7). ~10 integer instructions instead of ~30.
    static __device__ __forceinline__ void prep8(Prep8& p, const Raw& r) { prep8_h(p, r.h, r.t); }
    // the same from the 16-byte header h, for chunk t (0..7) of the super-block (sub-blocks 2 (t / 2), + 1). Each
    // 6-bit value becomes the float 2^23 + v by one byte permute (0x4B0000vv), and d * v is one exact FMA with
    // -2^23 d (d * v has at most 17 significant bits): no int-to-float conversions.
    static __device__ __forceinline__ void prep8_h(Prep8& p, const uint4& h, int t) {
        const float d = half_bits(h.x), dmin = half_bits(h.x >> 16);
        const uint32_t s0 = h.y, s1 = h.z, s2 = h.w;
        const bool upper = t >= 4;  // j >= 4
        const uint32_t scw = upper ? ((s2 & 0x0F0F0F0Fu) | ((s0 >> 2) & 0x30303030u)) : (s0 & 0x3F3F3F3Fu);
        const uint32_t mw = upper ? (((s2 >> 4) & 0x0F0F0F0Fu) | ((s1 >> 2) & 0x30303030u)) : (s1 & 0x3F3F3F3Fu);
        const uint32_t sel = 0x7540u | ((t & 2) ? 2u : 0u);  // byte j % 4 (0 or 2) of the word, then 0, 0, 0x4B
        const float nd = -8388608.0f * d, ndm = -8388608.0f * dmin;
        p.A0 = fmaf(d, __uint_as_float(__byte_perm(scw, 0x4B000000u, sel)), nd);  // d sc q - dmin m
        p.C0 = fmaf(dmin, __uint_as_float(__byte_perm(mw, 0x4B000000u, sel)), ndm);
        p.A1 = fmaf(d, __uint_as_float(__byte_perm(scw, 0x4B000000u, sel + 1)), nd);
        p.C1 = fmaf(dmin, __uint_as_float(__byte_perm(mw, 0x4B000000u, sel + 1)), ndm);
    }
    static constexpr __device__ bool q8_hi(int P) { return (P >> 1) != 0; }
    static __device__ __forceinline__ void q8_piece(const Raw& r, int P, uint32_t& w0, uint32_t& w1) {
        const uint32_t m = (P >> 1) ? 0xF0F0F0F0u : 0x0F0F0F0Fu;
        w0 = ((P & 1) ? r.q.z : r.q.x) & m;
        w1 = ((P & 1) ? r.q.w : r.q.y) & m;
    }
    static __device__ __forceinline__ float q8_a(const Prep8& p, int g) { return g ? p.A1 : p.A0; }
    static __device__ __forceinline__ float q8_c(const Prep8& p, int g) { return g ? p.C1 : p.C0; }

    static __device__ __forceinline__ int col(int c, int P) {
        const int t = c & 7;
        return 256 * (c >> 3) + 64 * (t >> 1) + 16 * (t & 1) + 8 * (P & 1) + 32 * (P >> 1);
    }

    // stream GEMV (gemv_stream.cuh): one plane of 144-byte super-blocks (8 chunks each); tiles start at a super-block
    static constexpr int kPlanes = 1;
    static __host__ __device__ constexpr int plane_unit(int) { return 8; }
    static __host__ __device__ constexpr int plane_bytes(int) { return 144; }
    static __device__ __forceinline__ void load_tile(Raw& r, const uint8_t* p0, const uint8_t*, const uint8_t*, int j) {
        const uint8_t* sb = p0 + 144 * (j >> 3);
        r.t = j & 7;
        r.h = *reinterpret_cast<const uint4*>(sb);
        r.q = *reinterpret_cast<const uint4*>(sb + 16 + 16 * r.t);
    }

    // cp.async ring slot: 32 lanes x (the 16-byte header, 16 nibble bytes)
    static constexpr int kSlot = 32 * 32;
    static __device__ __forceinline__ void issue(uint8_t* slot, int lane, const Planes& w, int row, int c, int nch) {
        const uint8_t* sb = w.p0 + (static_cast<size_t>(row) * (nch >> 3) + (c >> 3)) * 144;
        cp_async16(slot + 16 * lane, sb);
        cp_async16(slot + 512 + 16 * lane, sb + 16 + 16 * (c & 7));
    }
    static __device__ __forceinline__ void fetch(Raw& r, const uint8_t* slot, int lane, int row, int c, int nch) {
        r.t = c & 7;
        r.h = *reinterpret_cast<const uint4*>(slot + 16 * lane);
        r.q = *reinterpret_cast<const uint4*>(slot + 512 + 16 * lane);
    }
};

// Q4_K for the int8-activation walk over 64-weight chunks (gemv.cuh modes 16-19), the same file bytes: chunk c of a
// row is super-block c / 4, group g = c % 4, i.e. nibble bytes 32g .. 32g + 31 = all of sub-block 2g (low nibbles,
// pieces 0-3: bytes 8P .. 8P + 7) and all of sub-block 2g + 1 (high nibbles, pieces 4-7). The header is loaded
// and its scales and mins decoded once per 64 weights instead of once per 32, and each sub-block is one whole
// 32-activation block (one group of 4 pieces). A warp's 32 lanes cover 8 consecutive super-blocks (1152 bytes);
// each lane's two 16-byte loads take every other 16 bytes of that span, so they go through L1 (the second finds
// the sector the first brought in) instead of ld_stream16's no-allocate.
struct FmtQ4_KW {
    static constexpr int kType = 12;
    static constexpr int kChunk = 64;  // weights per chunk (gemv.cuh's ChunkShape)
    static constexpr int kPieces = 8;
    struct Raw {
        uint4 h;       // d, dmin, scales[0..11]
        uint4 q0, q1;  // nibble bytes 32g .. 32g + 15, 32g + 16 .. 32g + 31
        int t;         // 2g: FmtQ4_K's chunk index of the group's first half (prep8_h)
    };
    static __device__ __forceinline__ void load(Raw& r, const Planes& w, int row, int c, int nch) {
        const uint8_t* sb = w.p0 + (static_cast<size_t>(row) * (nch >> 2) + (c >> 2)) * 144;
        const int g = c & 3;
        r.t = 2 * g;
        r.h = ld_cached16(sb);  // the 4 lanes of a super-block read the same 16 bytes
        r.q0 = ld_cached16(sb + 16 + 32 * g);
        r.q1 = ld_cached16(sb + 32 + 32 * g);
    }

    static constexpr int kQ8Group = 4;  // pieces 0-3: sub-block 2g; 4-7: 2g + 1
    static constexpr bool kQ8Signed = false;
    static constexpr bool kQ8Sum = true;
    using Prep8 = FmtQ4_K::Prep8;
    static __device__ __forceinline__ void prep8(Prep8& p, const Raw& r) { FmtQ4_K::prep8_h(p, r.h, r.t); }
    static constexpr __device__ bool q8_hi(int P) { return P >= 4; }
    static __device__ __forceinline__ void q8_piece(const Raw& r, int P, uint32_t& w0, uint32_t& w1) {
        const uint32_t m = P >= 4 ? 0xF0F0F0F0u : 0x0F0F0F0Fu;
        const uint4& q = (P & 2) ? r.q1 : r.q0;
        w0 = ((P & 1) ? q.z : q.x) & m;
        w1 = ((P & 1) ? q.w : q.y) & m;
    }
    static __device__ __forceinline__ float q8_a(const Prep8& p, int g) { return g ? p.A1 : p.A0; }
    static __device__ __forceinline__ float q8_c(const Prep8& p, int g) { return g ? p.C1 : p.C0; }
    static __device__ __forceinline__ int col(int c, int P) {
        return 256 * (c >> 2) + 64 * (c & 3) + 8 * (P & 3) + 32 * (P >> 2);
    }
};

}  // namespace awq
