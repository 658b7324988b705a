// Q4_0 (GGUF block of 32: fp16 d, 16 bytes of nibbles; byte i holds element i low, element i + 16 high),
// value d * (q - 8).
//
// Load-time re-layout (ops.py), so that every load is aligned:
//   p0  [rows][nb][16]  the nibbles of each block, as in the file
//   p1  [rows][nb]      d (fp16 bits)
// A chunk is one block; piece P holds columns 32c + 8P .. +7.
#pragma once

#include "common.cuh"

namespace awq {

struct FmtQ4_0 {
    static constexpr int kType = 2;  // GGML_TYPE_Q4_0
    struct Raw {
        uint4 q;
        uint32_t d;
    };
    struct Prep {
        float A, C;
    };

    static __device__ __forceinline__ void load(Raw& r, const Planes& w, int row, int c, int nch) {
        const size_t blk = static_cast<size_t>(row) * nch + c;
        r.q = ld_stream16(w.p0 + blk * 16);
        r.d = ld_u16(w.p1 + blk * 2);
    }

    static __device__ __forceinline__ void prep(Prep& p, const Raw& r) {
        const float d = half_bits(r.d);
        p.A = 128.0f * d;  // d * (q - 8) = 128 d (1 + q/128) - 136 d, both factors exact
        p.C = 136.0f * d;
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

    // the factored path (batch 1): v = 1 + q/128 of piece P, and its (A, C)
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

    // int8-activation path (gemv.cuh, modes 4/5): piece P's 8 weights as two words of bytes for dp4a; when
    // q8_hi(P) the bytes hold 16 q (high nibbles masked in place, no shift). A group of kQ8Group pieces shares
    // (A, C) and one 32-activation block: its sum is dx * (A * dot - C * sum(xq)).
    static constexpr int kQ8Group = 4;
    static constexpr bool kQ8Signed = false;
    static constexpr bool kQ8Sum = true;
    struct Prep8 {
        float A, C;
    };
    static __device__ __forceinline__ void prep8(Prep8& p, const Raw& r) {
        const float d = half_bits(r.d);
        p.A = d;  // d (q - 8) = d q - 8 d
        p.C = 8.0f * d;
    }
    static constexpr __device__ bool q8_hi(int P) { return (P >> 1) != 0; }
    static __device__ __forceinline__ void q8_piece(const Raw& r, int P, uint32_t& w0, uint32_t& w1) {
        const uint32_t m = (P >> 1) ? 0xF0F0F0F0u : 0x0F0F0F0Fu;
        w0 = ((P & 1) ? r.q.z : r.q.x) & m;
        w1 = ((P & 1) ? r.q.w : r.q.y) & m;
    }
    static __device__ __forceinline__ float q8_a(const Prep8& p, int) { return p.A; }
    static __device__ __forceinline__ float q8_c(const Prep8& p, int) { return p.C; }

    static __device__ __forceinline__ int col(int c, int P) { return 32 * c + 8 * P; }

    // stream GEMV (gemv_stream.cuh): plane p holds plane_bytes(p) per plane_unit(p) chunks of a row; load_tile reads
    // chunk j of a row's tile from this row's copies of the planes (p0..p2, in shared memory)
    static constexpr int kPlanes = 2;
    static __host__ __device__ constexpr int plane_unit(int) { return 1; }
    static __host__ __device__ constexpr int plane_bytes(int p) { return p == 0 ? 16 : 2; }
    static __device__ __forceinline__ void load_tile(Raw& r, const uint8_t* p0, const uint8_t* p1, const uint8_t*,
                                                     int j) {
        r.q = *reinterpret_cast<const uint4*>(p0 + 16 * j);
        r.d = *reinterpret_cast<const uint16_t*>(p1 + 2 * j);
    }

    // cp.async ring slot of one row-step of a warp: 32 lanes x (16 quant bytes, the 4-byte word holding d)
    static constexpr int kSlot = 32 * 16 + 32 * 4;
    static __device__ __forceinline__ void issue(uint8_t* slot, int lane, const Planes& w, int row, int c, int nch) {
        const size_t blk = static_cast<size_t>(row) * nch + c;
        cp_async16(slot + 16 * lane, w.p0 + blk * 16);
        cp_async4(slot + 512 + 4 * lane, half_word_addr(w.p1, blk));
    }
    static __device__ __forceinline__ void fetch(Raw& r, const uint8_t* slot, int lane, int row, int c, int nch) {
        const size_t blk = static_cast<size_t>(row) * nch + c;
        r.q = *reinterpret_cast<const uint4*>(slot + 16 * lane);
        r.d = half_from_word(*reinterpret_cast<const uint32_t*>(slot + 512 + 4 * lane), blk);
    }
};

}  // namespace awq
