// A counter-based hash: murmur3's 32-bit finaliser over (seed, index). It
// drives the dynamic replica choice and the random tensor fills, with no
// generator state, so the host recomputes any value (src/tensor/counter-hash.ts
// is its twin).
#pragma once

#include <cstdint>

namespace wideep {

__host__ __device__ inline uint32_t CounterHash(uint32_t seed, uint32_t i) {
  uint32_t h = seed ^ (i * 0x9e3779b9u);
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

// In [0, 1), exactly h / 2^32.
__host__ __device__ inline double CounterUniform(uint32_t seed, uint32_t i) {
  return static_cast<double>(CounterHash(seed, i)) / 4294967296.0;
}

}  // namespace wideep
