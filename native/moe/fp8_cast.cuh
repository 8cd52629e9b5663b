// The fp8 e4m3 cast of one 128-channel block, shared by every kernel that
// quantises: amax floored at 1e-4, scale = amax / 448 (or its next power of
// two), q = saturating round-to-nearest-even of x * (1 / scale). Each step is
// one float32 operation, so src/ep/fp8-quant.ts reproduces it bit for bit.
#pragma once

#include <cuda_fp8.h>

#include <cstdint>

namespace wideep::moe {

constexpr float kFp8Max = 448.0f;
constexpr float kAmaxFloor = 1e-4f;

// The smallest power of two >= x for a positive finite x.
__device__ __forceinline__ float RoundUpToPowerOfTwo(float x) {
  uint32_t bits = __float_as_uint(x);
  if ((bits & 0x7fffff) == 0) return x;
  uint32_t exp = (bits >> 23) & 0xff;
  if (exp == 0) {  // subnormal: the next power of two of the mantissa, scaled
    uint32_t man = bits & 0x7fffff;
    uint32_t p = 1u << (32 - __clz(man - 1));
    return static_cast<float>(p) * 1.40129846e-45f;  // 2^-149
  }
  return __uint_as_float((exp + 1) << 23);
}

struct Fp8Scale {
  float scale;
  float scaleInv;
};

__device__ __forceinline__ Fp8Scale BlockScale(float amax, bool roundScale) {
  const float a = fmaxf(amax, kAmaxFloor);
  if (roundScale) {
    const float s = RoundUpToPowerOfTwo(__fdiv_rn(a, kFp8Max));
    return {s, __fdiv_rn(1.0f, s)};
  }
  return {__fdiv_rn(a, kFp8Max), __fdiv_rn(kFp8Max, a)};
}

__device__ __forceinline__ uint8_t ToFp8(float v) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}

}  // namespace wideep::moe
