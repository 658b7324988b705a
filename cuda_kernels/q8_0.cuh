// Q8_0 (GGUF block of 32: fp16 d, 32 int8), value d * q.
//
// Load-time re-layout (ops.py), so that every load is aligned:
//   p0  [rows][nb][32]  the int8 values of each block, as in the file
//   p1  [rows][nb]      d (fp16 bits)
// A chunk is one block; piece P holds columns 32c + 8P .. +7.
#pragma once

#include "common.cuh"

namespace awq {

struct FmtQ8_0 {
    static constexpr int kType = 8;  // GGML_TYPE_Q8_0
    struct Raw {
        uint4 q0, q1;
        uint32_t d;
    };
    struct Prep {
        float A, C;
    };

    static __device__ __forceinline__ void load(Raw& r, const Planes& w, int row, int c, int nch) {
        const size_t blk = static_cast<size_t>(row) * nch + c;
        r.q0 = ld_stream16(w.p0 + blk * 32);
        r.q1 = ld_stream16(w.p0 + blk * 32 + 16);
        r.d = ld_u16(w.p1 + blk * 2);
    }

    static __device__ __forceinline__ void prep(Prep& p, const Raw& r) {
        const float d = half_bits(r.d);
        p.A = 32768.0f * d;  // with u = q + 128: d q = 32768 d (1 + u/32768) - 32896 d, both factors exact
        p.C = 32896.0f * d;
    }

    static __device__ __forceinline__ void piece(const Raw& r, const Prep& p, int P, float* out) {
        const uint4& q = (P >> 1) ? r.q1 : r.q0;
        const uint32_t a = ((P & 1) ? q.z : q.x) ^ 0x80808080u;  // int8 -> q + 128
        const uint32_t b = ((P & 1) ? q.w : q.y) ^ 0x80808080u;
        fma4_unit8(a, p.A, p.C, out);
        fma4_unit8(b, p.A, p.C, out + 4);
    }

    // 1 + u/32768 would lose ~15 bits to the cancellation of the factored path: not used for Q8_0
    static constexpr bool kFactored = false;
    static __device__ __forceinline__ void units(const Raw&, int, float*) {}
    static __device__ __forceinline__ float scale_a(const Prep& p, int) { return p.A; }
    static __device__ __forceinline__ float scale_c(const Prep& p, int) { return p.C; }

    // int8-activation path (gemv.cuh, modes 4/5): piece P's 8 weights as two words of bytes for dp4a; when
    // q8_hi(P) the bytes hold 16 q (high nibbles masked in place, no shift). A group of kQ8Group pieces shares
    // (A, C) and one 32-activation block: its sum is dx * (A * dot - C * sum(xq)).
    static constexpr int kQ8Group = 4;
    static constexpr bool kQ8Signed = true;
    static constexpr bool kQ8Sum = false;
    struct Prep8 {
        float A;
    };
    static __device__ __forceinline__ void prep8(Prep8& p, const Raw& r) { p.A = half_bits(r.d); }
    static constexpr __device__ bool q8_hi(int) { return false; }
    static __device__ __forceinline__ void q8_piece(const Raw& r, int P, uint32_t& w0, uint32_t& w1) {
        const uint4& q = (P >> 1) ? r.q1 : r.q0;
        w0 = (P & 1) ? q.z : q.x;
        w1 = (P & 1) ? q.w : q.y;
    }
    static __device__ __forceinline__ float q8_a(const Prep8& p, int) { return p.A; }
    static __device__ __forceinline__ float q8_c(const Prep8&, int) { return 0.0f; }

    static __device__ __forceinline__ int col(int c, int P) { return 32 * c + 8 * P; }

    // stream GEMV (gemv_stream.cuh): as FmtQ4_0's
    static constexpr int kPlanes = 2;
    static __host__ __device__ constexpr int plane_unit(int) { return 1; }
    static __host__ __device__ constexpr int plane_bytes(int p) { return p == 0 ? 32 : 2; }
    static __device__ __forceinline__ void load_tile(Raw& r, const uint8_t* p0, const uint8_t* p1, const uint8_t*,
                                                     int j) {
        r.q0 = *reinterpret_cast<const uint4*>(p0 + 32 * j);
        r.q1 = *reinterpret_cast<const uint4*>(p0 + 32 * j + 16);
        r.d = *reinterpret_cast<const uint16_t*>(p1 + 2 * j);
    }

    // cp.async ring slot: 32 lanes x (two 16-byte halves of the quants, the 4-byte word holding d)
    static constexpr int kSlot = 32 * 32 + 32 * 4;
    static __device__ __forceinline__ void issue(uint8_t* slot, int lane, const Planes& w, int row, int c, int nch) {
        const size_t blk = static_cast<size_t>(row) * nch + c;
        cp_async16(slot + 16 * lane, w.p0 + blk * 32);
        cp_async16(slot + 512 + 16 * lane, w.p0 + blk * 32 + 16);
        cp_async4(slot + 1024 + 4 * lane, half_word_addr(w.p1, blk));
    }
    static __device__ __forceinline__ void fetch(Raw& r, const uint8_t* slot, int lane, int row, int c, int nch) {
        const size_t blk = static_cast<size_t>(row) * nch + c;
        r.q0 = *reinterpret_cast<const uint4*>(slot + 16 * lane);
        r.q1 = *reinterpret_cast<const uint4*>(slot + 512 + 16 * lane);
        r.d = half_from_word(*reinterpret_cast<const uint32_t*>(slot + 1024 + 4 * lane), blk);
    }
};

}  // namespace awq
