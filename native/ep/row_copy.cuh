// Moving whole rows to up to kMaxRanks destinations (peer GPUs' memory over
// NVLink, or local memory): each warp streams 16-byte vectors through
// registers, several per lane in flight. (A bulk-copy/TMA variant measured no
// faster on 4xH200 and was dropped.)
#pragma once

#include "ep/device_utils.cuh"
#include "ep/ep_params.h"

namespace wideep::ep {

// One row copy: a source and its destinations.
struct RowJob {
  const uint8_t* src;
  uint8_t* dst[kMaxRanks];
  int numDst;
};

// Copies rows `first, first + stride, ...` below `count`; `job(i)` describes
// row i. Row bytes: a multiple of 16.
template <class Job>
__device__ __forceinline__ void copy_rows(int first, int stride, int count, int rowBytes, int lane, const Job& job) {
  for (int i = first; i < count; i += stride) {
    RowJob j = job(i);
    const int n = rowBytes >> 4;
    const int4* s = reinterpret_cast<const int4*>(j.src);
    constexpr int kUnroll = 4;
    int v = lane;
    for (; v + (kUnroll - 1) * kWarpSize < n; v += kUnroll * kWarpSize) {
      int4 r[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) r[u] = ld_nc_v4(s + v + u * kWarpSize);
      for (int d = 0; d < j.numDst; ++d) {
        int4* out = reinterpret_cast<int4*>(j.dst[d]);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) st_na_v4(out + v + u * kWarpSize, r[u]);
      }
    }
    for (; v < n; v += kWarpSize) {
      int4 r = ld_nc_v4(s + v);
      for (int d = 0; d < j.numDst; ++d) st_na_v4(reinterpret_cast<int4*>(j.dst[d]) + v, r);
    }
  }
}

}  // namespace wideep::ep
