// Fp8MaskedGemm: out[e, r, :] = x[e, r, :] · w[e]ᵀ for the rows r < counts[e]
// of every expert e, in fp8 e4m3 with DeepSeek-V3's block scales (1x128 on x,
// 128x128 on w), f32 accumulation, bf16 out. One launch covers every expert
// and reads each expert's count on the device, so a decode step streams each
// weight once, skips experts nobody routed to, and needs no host sync. That
// is the case cuBLASLt serves worst: it has no grouped block-scaled fp8 GEMM
// on Hopper, so it takes one launch per expert over all its padded rows.
//
// A thread block owns one 128-column block of one expert's output (one weight
// scale block wide) and walks K in 128-wide blocks through a cp.async ring of
// kStages shared-memory stages, 64 rows per pass. Four warps each own 32
// columns and issue mma.m16n8k32 e4m3 (sm_89+), accumulating one K block in
// f32, then fold it into the total times the row's and the block's scales.
//
// The mma's k order inside a 128-wide block is free as long as x and w agree,
// so each lane reads whole 16-byte chunks: lane (g, t) takes chunk c*4 + t
// (c = 0, 1) of row g of x and of column g of w, and mma step (c, h) uses
// words 2h and 2h+1 of that chunk as the fragment's first and second k
// quarter. Chunks are stored XOR-swizzled by row parity, so the eight lanes of
// one shared-memory phase (rows g, g+1) hit 32 different banks.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>

#include "moe/moe_kernels.h"

namespace wideep::moe {
namespace {

constexpr int kBlockN = 128;
constexpr int kBlockK = 128;
constexpr int kBlockM = 64;
constexpr int kStages = 4;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kWarpN = kBlockN / kWarps;  // 32 columns: four n8 tiles
constexpr int kNTiles = kWarpN / 8;
constexpr int kMTiles = kBlockM / 16;
constexpr int kChunk = 16;                  // bytes per cp.async and per shared load
constexpr int kChunksPerRow = kBlockK / kChunk;

// One stage: the weight tile, the x tile, the x rows' scales and the weight block's scale.
constexpr int kWTileBytes = kBlockN * kBlockK;
constexpr int kXTileBytes = kBlockM * kBlockK;
constexpr int kXScaleOffset = kWTileBytes + kXTileBytes;
constexpr int kWScaleOffset = kXScaleOffset + kBlockM * 4;
constexpr int kStageBytes = (kWScaleOffset + 4 + 127) / 128 * 128;
constexpr int kSmemBytes = kStages * kStageBytes;

static_assert(kBlockM * kChunksPerRow % kThreads == 0 && kBlockN * kChunksPerRow % kThreads == 0);
static_assert(kThreads > kBlockM, "one thread past the row scales' loaders copies the weight scale");

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// The "memory" clobbers keep the compiler from moving shared-memory reads across the copies and waits.
// Copies 16 bytes, or writes 16 zeros when valid is false (nothing is read then).
__device__ __forceinline__ void CopyChunk(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SmemAddr(dst)), "l"(src), "r"(valid ? 16 : 0)
               : "memory");
}

// Weights are read once per launch: marked first to leave L2, so the tokens every
// column block of an expert reads stay there.
__device__ __forceinline__ uint64_t EvictFirstPolicy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

__device__ __forceinline__ void CopyStreamedChunk(void* dst, const void* src, uint64_t policy) {
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;\n" ::"r"(SmemAddr(dst)), "l"(src), "l"(policy)
               : "memory");
}

__device__ __forceinline__ void CopyWord(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(SmemAddr(dst)), "l"(src), "r"(valid ? 4 : 0)
               : "memory");
}

__device__ __forceinline__ void CommitGroup() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N>
__device__ __forceinline__ void WaitGroups() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Byte offset of 16-byte chunk ch of tile row r.
__device__ __forceinline__ int Swizzled(int r, int ch) { return r * kBlockK + ((ch ^ ((r & 1) << 2)) * kChunk); }

__device__ __forceinline__ void MmaE4m3(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

struct Tile {
  const uint8_t* w;    // this block's 128 weight rows, at K offset 0
  const float* ws;     // its scale row: one per K block
  const uint8_t* x;    // the expert's rows
  const float* xs;     // the expert's scales
  uint64_t policy;     // the weights' L2 eviction policy
  int row0;            // first row of this pass
  int rows;            // valid rows in this pass (1..kBlockM)
};

__device__ __forceinline__ void LoadStage(const Fp8MaskedGemmArgs& a, const Tile& t, int kb, uint8_t* stage) {
  const int tid = threadIdx.x;
  const int64_t k0 = static_cast<int64_t>(kb) * kBlockK;
#pragma unroll
  for (int i = 0; i < kBlockN * kChunksPerRow / kThreads; ++i) {
    const int id = tid + i * kThreads, r = id / kChunksPerRow, ch = id % kChunksPerRow;
    CopyStreamedChunk(stage + Swizzled(r, ch), t.w + r * static_cast<int64_t>(a.k) + k0 + ch * kChunk, t.policy);
  }
  uint8_t* xt = stage + kWTileBytes;
  // Rows past the last 16-row tile holding a valid row are never read: left as they are.
  const int tileRows = (t.rows + 15) / 16 * 16;
#pragma unroll
  for (int i = 0; i < kBlockM * kChunksPerRow / kThreads; ++i) {
    const int id = tid + i * kThreads, r = id / kChunksPerRow, ch = id % kChunksPerRow;
    if (r >= tileRows) break;
    const bool valid = r < t.rows;
    const int64_t row = t.row0 + (valid ? r : 0);
    CopyChunk(xt + Swizzled(r, ch), t.x + row * a.k + k0 + ch * kChunk, valid);
  }
  if (tid < kBlockM) {
    // Scales of rows past the count are zeros, so those rows' (unstored) sums stay finite.
    const bool valid = tid < t.rows;
    const int64_t row = t.row0 + (valid ? tid : 0);
    CopyWord(stage + kXScaleOffset + tid * 4, t.xs + row * a.xsRow + kb * a.xsBlock, valid);
  } else if (tid == kBlockM) {
    CopyWord(stage + kWScaleOffset, t.ws + kb, true);
  }
}

// acc += (x tile · w tileᵀ) * xScale(row) * wScale for this warp's 32 columns.
__device__ __forceinline__ void ComputeStage(const uint8_t* stage, int mTiles, float (&acc)[kMTiles][kNTiles][4]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const uint8_t* xt = stage + kWTileBytes;
  float part[kMTiles][kNTiles][4] = {};
#pragma unroll
  for (int c = 0; c < 2; ++c) {
    uint4 w[kNTiles];
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      w[nt] = *reinterpret_cast<const uint4*>(stage + Swizzled(warp * kWarpN + nt * 8 + g, c * 4 + t));
    }
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      if (mt >= mTiles) break;
      const uint4 lo = *reinterpret_cast<const uint4*>(xt + Swizzled(mt * 16 + g, c * 4 + t));
      const uint4 hi = *reinterpret_cast<const uint4*>(xt + Swizzled(mt * 16 + g + 8, c * 4 + t));
      const uint32_t first[4] = {lo.x, hi.x, lo.y, hi.y};
      const uint32_t second[4] = {lo.z, hi.z, lo.w, hi.w};
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        MmaE4m3(part[mt][nt], first, w[nt].x, w[nt].y);
        MmaE4m3(part[mt][nt], second, w[nt].z, w[nt].w);
      }
    }
  }
  const float* xs = reinterpret_cast<const float*>(stage + kXScaleOffset);
  const float ws = *reinterpret_cast<const float*>(stage + kWScaleOffset);
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
    if (mt >= mTiles) break;
    const float s0 = xs[mt * 16 + g] * ws, s1 = xs[mt * 16 + g + 8] * ws;
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      acc[mt][nt][0] = fmaf(part[mt][nt][0], s0, acc[mt][nt][0]);
      acc[mt][nt][1] = fmaf(part[mt][nt][1], s0, acc[mt][nt][1]);
      acc[mt][nt][2] = fmaf(part[mt][nt][2], s1, acc[mt][nt][2]);
      acc[mt][nt][3] = fmaf(part[mt][nt][3], s1, acc[mt][nt][3]);
    }
  }
}

__device__ __forceinline__ void StoreRows(const Fp8MaskedGemmArgs& a, int e, int nBlock, const Tile& t, int mTiles,
                                          const float (&acc)[kMTiles][kNTiles][4]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, tg = lane % 4;
  const int col0 = nBlock * kBlockN + warp * kWarpN + tg * 2;
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
    if (mt >= mTiles) break;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = mt * 16 + g + half * 8;
      if (r >= t.rows) continue;
      uint16_t* row = a.out + (static_cast<int64_t>(e) * a.rows + t.row0 + r) * a.n;
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        const __nv_bfloat162 v = __floats2bfloat162_rn(acc[mt][nt][half * 2], acc[mt][nt][half * 2 + 1]);
        *reinterpret_cast<__nv_bfloat162*>(row + col0 + nt * 8) = v;
      }
    }
  }
}

__global__ void __launch_bounds__(kThreads, 2) Fp8MaskedGemmKernel(Fp8MaskedGemmArgs a) {
  const int e = blockIdx.y, nBlock = blockIdx.x;
  const int count = min(max(a.counts[e], 0), a.rows);
  if (count == 0) return;  // nobody routed here: not one weight byte read
  extern __shared__ __align__(128) uint8_t smem[];
  const int kBlocks = a.k / kBlockK;
  Tile t{};
  t.w = a.w + (static_cast<int64_t>(e) * a.n + static_cast<int64_t>(nBlock) * kBlockN) * a.k;
  t.ws = a.wScales + (static_cast<int64_t>(e) * (a.n / kBlockN) + nBlock) * kBlocks;
  t.x = a.x + static_cast<int64_t>(e) * a.rows * a.k;
  t.xs = a.xScales + e * a.xsBatch;
  t.policy = EvictFirstPolicy();
  for (t.row0 = 0; t.row0 < count; t.row0 += kBlockM) {
    t.rows = min(kBlockM, count - t.row0);
    const int mTiles = (t.rows + 15) / 16;
    float acc[kMTiles][kNTiles][4] = {};
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < kBlocks) LoadStage(a, t, s, smem + s * kStageBytes);
      CommitGroup();
    }
    for (int kb = 0; kb < kBlocks; ++kb) {
      WaitGroups<kStages - 2>();
      // Every warp is done with the stage the next load overwrites (read at kb - 1).
      __syncthreads();
      const int next = kb + kStages - 1;
      if (next < kBlocks) LoadStage(a, t, next, smem + (next % kStages) * kStageBytes);
      CommitGroup();
      ComputeStage(smem + (kb % kStages) * kStageBytes, mTiles, acc);
    }
    StoreRows(a, e, nBlock, t, mTiles, acc);
    // The next pass's first loads overwrite stages that slow warps may still read.
    __syncthreads();
  }
}

}  // namespace

cudaError_t LaunchFp8MaskedGemm(const Fp8MaskedGemmArgs& a, cudaStream_t stream) {
  if (a.experts == 0 || a.rows == 0 || a.n == 0) return cudaSuccess;
  // Over 48 KiB of dynamic shared memory must be allowed per device; done once for the
  // first 64 devices, at every launch past them. The carveout asks for all of L1 as
  // shared memory, so that two blocks fit on an SM.
  static std::atomic<uint64_t> allowed{0};
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (bit == 0 || (allowed.load() & bit) == 0) {
    err = cudaFuncSetAttribute(Fp8MaskedGemmKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
    if (err == cudaSuccess) {
      err = cudaFuncSetAttribute(Fp8MaskedGemmKernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                 cudaSharedmemCarveoutMaxShared);
    }
    if (err != cudaSuccess) return err;
    allowed.fetch_or(bit);
  }
  const dim3 grid(static_cast<unsigned>(a.n / kBlockN), static_cast<unsigned>(a.experts));
  Fp8MaskedGemmKernel<<<grid, kThreads, kSmemBytes, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace wideep::moe
