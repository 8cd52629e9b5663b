// Moving whole rows to up to kMaxRanks destinations (peer GPUs' memory over
// NVLink, or local memory). Two engines, chosen at compile time:
//  - kWarp: each warp streams 16-byte vectors through registers;
//  - kTma:  one lane per warp drives the bulk-copy engine (global -> shared ->
//           global), keeping kStages rows in flight, so few SMs fill the link.
#pragma once

#include "ep/device_utils.cuh"
#include "ep/ep_params.h"

namespace wideep::ep {

enum class CopyEngine { kWarp, kTma };

constexpr int kTmaStages = 3;
constexpr int kTmaStageBytes = 16 * 1024;  // a 7168-wide bf16 row (14 KiB) fits one stage

// One row copy: a source and its destinations.
struct RowJob {
  const uint8_t* src;
  uint8_t* dst[kMaxRanks];
  int numDst;
};

// Shared memory a warp needs for the TMA engine.
struct TmaWarpStages {
  alignas(128) uint8_t data[kTmaStages][kTmaStageBytes];
  uint64_t full[kTmaStages];
};

// Copies rows `first, first + stride, ...` below `count`; `job(i)` describes row i
// (evaluated by lane 0 only for the TMA engine). Row bytes: multiple of 16.
template <CopyEngine kEngine, class Job>
__device__ __forceinline__ void copy_rows(int first, int stride, int count, int rowBytes, TmaWarpStages* stages,
                                          int lane, const Job& job) {
  if constexpr (kEngine == CopyEngine::kWarp) {
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
  } else {
    // Rows wider than a stage are moved in equal chunks.
    const int chunks = (rowBytes + kTmaStageBytes - 1) / kTmaStageBytes;
    const int chunkBytes = ((rowBytes / chunks) + 15) & ~15;
    const int total = count <= first ? 0 : ((count - first + stride - 1) / stride) * chunks;
    if (lane == 0) {
      for (int s = 0; s < kTmaStages; ++s) mbarrier_init(&stages->full[s], 1);
      asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
      auto chunk_src = [&](int it, RowJob& j, int& off, int& bytes) {
        j = job(first + (it / chunks) * stride);
        off = (it % chunks) * chunkBytes;
        bytes = min(chunkBytes, rowBytes - off);
      };
      auto issue_load = [&](int it) {
        RowJob j;
        int off, bytes;
        chunk_src(it, j, off, bytes);
        int s = it % kTmaStages;
        mbarrier_arrive_expect_tx(&stages->full[s], bytes);
        bulk_load(stages->data[s], j.src + off, bytes, &stages->full[s]);
      };
      for (int it = 0; it < min(total, kTmaStages); ++it) issue_load(it);
      for (int it = 0; it < total; ++it) {
        const int s = it % kTmaStages;
        mbarrier_wait_parity(&stages->full[s], (it / kTmaStages) & 1);
        RowJob j;
        int off, bytes;
        chunk_src(it, j, off, bytes);
        for (int d = 0; d < j.numDst; ++d) bulk_store(j.dst[d] + off, stages->data[s], bytes);
        bulk_commit();
        // Refill the stage of the previous chunk once its stores have read it.
        if (it >= 1 && it - 1 + kTmaStages < total) {
          bulk_wait_read<1>();
          issue_load(it - 1 + kTmaStages);
        }
      }
      bulk_wait_all();
      fence_proxy_async();
    }
    __syncwarp();
  }
}

}  // namespace wideep::ep
