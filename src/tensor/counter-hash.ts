/**
 * The counter-based hash behind device random fills and the dynamic replica
 * choice (native/common/counter_hash.cuh is its twin): murmur3's 32-bit
 * finaliser over (seed, index), so the host recomputes any device value.
 */
export function counterHash(seed: number, i: number): number {
  let h = (seed ^ Math.imul(i >>> 0, 0x9e3779b9)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** In [0, 1): exactly counterHash / 2^32. */
export function counterUniform(seed: number, i: number): number {
  return counterHash(seed, i) / 4294967296;
}

/** 24 random bits as a float32 in [0, 1), as the device fill draws them. */
export function counterUniform24(seed: number, i: number): number {
  return (counterHash(seed, i) >>> 8) / 16777216;
}
