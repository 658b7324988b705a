// Q6_K (GGUF super-block of 256, 210 bytes: ql[128] low nibbles, qh[64] high 2 bits, int8 scales[16] of
// sub-blocks of 16, fp16 d), value d * sc * (q - 32). In half n (0, 1) of the super-block, for l = 0..31:
//   element 128n + l      = ql[64n + l] & 15 | (qh[32n + l] >> 0 & 3) << 4,  scale sc[8n + l/16]
//   element 128n + 32 + l = ql[64n + 32 + l] & 15 | (qh >> 2 & 3) << 4,      scale sc[8n + l/16 + 2]
//   element 128n + 64 + l = ql[64n + l] >> 4 | (qh >> 4 & 3) << 4,           scale sc[8n + l/16 + 4]
//   element 128n + 96 + l = ql[64n + 32 + l] >> 4 | (qh >> 6 & 3) << 4,      scale sc[8n + l/16 + 6]
//
// Load-time re-layout (ops.py), since 210-byte blocks leave every field unaligned:
//   p0  [rows][nsb][192]  ql then qh, as in the file
//   p1  [rows][nsb][16]   the int8 scales
//   p2  [rows][nsb]       d (fp16 bits)
// Chunk c of a row is super-block c / 8, part t = c % 8: half n = t / 4, l = 8 (t % 4) + 0..7; piece P holds
// elements 128n + 32P + l.
#pragma once

#include "common.cuh"

namespace awq {

struct FmtQ6_K {
    static constexpr int kType = 14;  // GGML_TYPE_Q6_K
    struct Raw {
        uint2 qa, qb, qh;  // ql[64n + l0 ..], ql[64n + 32 + l0 ..], qh[32n + l0 ..], 8 bytes each
        uint4 sc;
        uint32_t d;
        int t;
    };
    struct Prep {
        float A[4], C[4];
    };

    static __device__ __forceinline__ void load(Raw& r, const Planes& w, int row, int c, int nch) {
        const size_t sb = static_cast<size_t>(row) * (nch >> 3) + (c >> 3);
        const int t = c & 7, n = t >> 2, l0 = (t & 3) * 8;
        const uint8_t* q = w.p0 + sb * 192;
        r.t = t;
        r.qa = ld_stream8(q + 64 * n + l0);
        r.qb = ld_stream8(q + 64 * n + 32 + l0);
        r.qh = ld_stream8(q + 128 + 32 * n + l0);
        r.sc = ld_stream16(w.p1 + sb * 16);
        r.d = ld_u16(w.p2 + sb * 2);
    }

    static __device__ __forceinline__ void prep(Prep& p, const Raw& r) {
        const float d = half_bits(r.d);
        const int n = r.t >> 2, is = (r.t & 3) >> 1;  // l / 16 for l = 8 (t % 4) + 0..7
        const uint32_t lo = n ? r.sc.z : r.sc.x;  // scales 8n + 0..3
        const uint32_t hi = n ? r.sc.w : r.sc.y;  // scales 8n + 4..7
#pragma unroll
        for (int P = 0; P < 4; ++P) {
            const uint32_t word = (P >> 1) ? hi : lo;
            const int sh = 8 * (is + 2 * (P & 1));
            const float ds = d * static_cast<float>(static_cast<int8_t>((word >> sh) & 0xFFu));
            p.A[P] = 128.0f * ds;  // d sc (q - 32) = 128 d sc (1 + q/128) - 160 d sc, both exact
            p.C[P] = 160.0f * ds;
        }
    }

    static __device__ __forceinline__ uint32_t bytes(uint32_t ql, uint32_t qh, int P) {
        uint32_t lo = (P >> 1) ? (ql >> 4) : ql;
        uint32_t hb;
        switch (P) {
            case 0: hb = qh << 4; break;
            case 1: hb = qh << 2; break;
            case 2: hb = qh; break;
            default: hb = qh >> 2; break;
        }
        return (lo & 0x0F0F0F0Fu) | (hb & 0x30303030u) | 0x80808080u;
    }

    static __device__ __forceinline__ void piece(const Raw& r, const Prep& p, int P, float* out) {
        const uint2 ql = (P & 1) ? r.qb : r.qa;
        fma4_unit7(bytes(ql.x, r.qh.x, P), p.A[P], p.C[P], out);
        fma4_unit7(bytes(ql.y, r.qh.y, P), p.A[P], p.C[P], out + 4);
    }

    static constexpr bool kFactored = true;
    static __device__ __forceinline__ void units(const Raw& r, int P, float* v) {
        const uint2 ql = (P & 1) ? r.qb : r.qa;
        unit7x4(bytes(ql.x, r.qh.x, P), v);
        unit7x4(bytes(ql.y, r.qh.y, P), v + 4);
    }
    static __device__ __forceinline__ float scale_a(const Prep& p, int P) { return p.A[P]; }
    static __device__ __forceinline__ float scale_c(const Prep& p, int P) { return p.C[P]; }

    // int8-activation path (gemv.cuh, modes 4/5): piece P's 8 weights as two words of bytes for dp4a; when
    // q8_hi(P) the bytes hold 16 q (high nibbles masked in place, no shift). A group of kQ8Group pieces shares
    // (A, C) and one 32-activation block: its sum is dx * (A * dot - C * sum(xq)).
    static constexpr int kQ8Group = 1;  // every piece has its own scale and activation block
    static constexpr bool kQ8Signed = false;
    static constexpr bool kQ8Sum = true;
    struct Prep8 {
        float A[4], C[4];
    };
    static __device__ __forceinline__ void prep8(Prep8& p, const Raw& r) {
        const float d = half_bits(r.d);
        const int n = r.t >> 2, is = (r.t & 3) >> 1;
        const uint32_t lo = n ? r.sc.z : r.sc.x;
        const uint32_t hi = n ? r.sc.w : r.sc.y;
#pragma unroll
        for (int P = 0; P < 4; ++P) {
            const uint32_t word = (P >> 1) ? hi : lo;
            const int sh = 8 * (is + 2 * (P & 1));
            const float ds = d * static_cast<float>(static_cast<int8_t>((word >> sh) & 0xFFu));
            p.A[P] = ds;  // d sc (q - 32)
            p.C[P] = 32.0f * ds;
        }
    }
    static constexpr __device__ bool q8_hi(int) { return false; }
    static __device__ __forceinline__ void q8_piece(const Raw& r, int P, uint32_t& w0, uint32_t& w1) {
        const uint2 ql = (P & 1) ? r.qb : r.qa;
        w0 = bytes(ql.x, r.qh.x, P) & 0x3F3F3F3Fu;  // q, without bytes()' 0x80
        w1 = bytes(ql.y, r.qh.y, P) & 0x3F3F3F3Fu;
    }
    static __device__ __forceinline__ float q8_a(const Prep8& p, int g) { return p.A[g]; }
    static __device__ __forceinline__ float q8_c(const Prep8& p, int g) { return p.C[g]; }

    static __device__ __forceinline__ int col(int c, int P) {
        const int t = c & 7;
        return 256 * (c >> 3) + 128 * (t >> 2) + 8 * (t & 3) + 32 * P;
    }

    // stream GEMV (gemv_stream.cuh): three planes per super-block (8 chunks): 192 quant bytes, 16 scales, 2 bytes of d
    static constexpr int kPlanes = 3;
    static __host__ __device__ constexpr int plane_unit(int) { return 8; }
    static __host__ __device__ constexpr int plane_bytes(int p) { return p == 0 ? 192 : p == 1 ? 16 : 2; }
    static __device__ __forceinline__ void load_tile(Raw& r, const uint8_t* p0, const uint8_t* p1, const uint8_t* p2,
                                                     int j) {
        const int sb = j >> 3, t = j & 7, n = t >> 2, l0 = (t & 3) * 8;
        const uint8_t* q = p0 + 192 * sb;
        r.t = t;
        r.qa = *reinterpret_cast<const uint2*>(q + 64 * n + l0);
        r.qb = *reinterpret_cast<const uint2*>(q + 64 * n + 32 + l0);
        r.qh = *reinterpret_cast<const uint2*>(q + 128 + 32 * n + l0);
        r.sc = *reinterpret_cast<const uint4*>(p1 + 16 * sb);
        r.d = *reinterpret_cast<const uint16_t*>(p2 + 2 * sb);
    }

    // cp.async ring slot: 32 lanes x (ql a, ql b, qh: 8 bytes each; the 16 scales; the 4-byte word holding d)
    static constexpr int kSlot = 32 * 24 + 32 * 16 + 32 * 4;
    static __device__ __forceinline__ void issue(uint8_t* slot, int lane, const Planes& w, int row, int c, int nch) {
        const size_t sb = static_cast<size_t>(row) * (nch >> 3) + (c >> 3);
        const int t = c & 7, n = t >> 2, l0 = (t & 3) * 8;
        const uint8_t* q = w.p0 + sb * 192;
        cp_async8(slot + 8 * lane, q + 64 * n + l0);
        cp_async8(slot + 256 + 8 * lane, q + 64 * n + 32 + l0);
        cp_async8(slot + 512 + 8 * lane, q + 128 + 32 * n + l0);
        cp_async16(slot + 768 + 16 * lane, w.p1 + sb * 16);
        cp_async4(slot + 1280 + 4 * lane, half_word_addr(w.p2, sb));
    }
    static __device__ __forceinline__ void fetch(Raw& r, const uint8_t* slot, int lane, int row, int c, int nch) {
        const size_t sb = static_cast<size_t>(row) * (nch >> 3) + (c >> 3);
        r.t = c & 7;
        r.qa = *reinterpret_cast<const uint2*>(slot + 8 * lane);
        r.qb = *reinterpret_cast<const uint2*>(slot + 256 + 8 * lane);
        r.qh = *reinterpret_cast<const uint2*>(slot + 512 + 8 * lane);
        r.sc = *reinterpret_cast<const uint4*>(slot + 768 + 16 * lane);
        r.d = half_from_word(*reinterpret_cast<const uint32_t*>(slot + 1280 + 4 * lane), sb);
    }
};

}  // namespace awq
