// The device side of the hierarchical normal mode's network leg (node_leg.h).
#include <cub/block/block_scan.cuh>
#include <cuda_bf16.h>

#include "ep/bf16_vec.cuh"
#include "ep/device_utils.cuh"
#include "ep/node_leg.h"

namespace wideep::ep {
namespace {

constexpr int kThreads = 256;
constexpr int kScanThreads = 1024;
constexpr int kWarpsPerBlock = kThreads / kWarpSize;

// Per token: its rank and node rows, and each rank and expert counted once
// per token (the first of the token's ids on that rank or expert counts it).
__global__ void token_layout(NodeLayoutArgs a) {
  const int t = blockIdx.x * kThreads + threadIdx.x;
  if (t >= a.numTokens) return;
  const int R = a.numRanks, P = a.ranksPerNode, N = R / P, k = a.topk;
  const int L = a.numExperts / R;
  const int32_t* ids = a.topkIdx + static_cast<size_t>(t) * k;
  uint8_t* inRank = a.isTokenInRank + static_cast<size_t>(t) * R;
  uint8_t* inNode = a.isTokenInNode + static_cast<size_t>(t) * N;
  for (int r = 0; r < R; ++r) inRank[r] = 0;
  for (int b = 0; b < N; ++b) inNode[b] = 0;
  for (int c = 0; c < k; ++c) {
    const int e = ids[c];
    if (e < 0 || e >= a.numExperts) {
      if (e != -1) atomicAdd(a.badIds, 1);
      continue;
    }
    const int r = e / L;
    bool newRank = true;
    for (int d = 0; d < c; ++d) {
      const int f = ids[d];
      if (f >= 0 && f < a.numExperts && f / L == r) newRank = false;
    }
    if (first_slot_of(ids, k, static_cast<int64_t>(e)) == c) atomicAdd(a.numTokensPerExpert + e, 1);
    if (newRank) atomicAdd(a.numTokensPerRank + r, 1);
    inRank[r] = 1;
    inNode[r / P] = 1;
  }
}

// One block: per node, a stable compaction of its tokens (the send list,
// concatenated by node) and each token's place in it; then the header.
__global__ void __launch_bounds__(kScanThreads) node_lists(NodeLayoutArgs a) {
  using Scan = cub::BlockScan<int, kScanThreads>;
  __shared__ typename Scan::TempStorage scratch;
  const int T = a.numTokens, P = a.ranksPerNode, N = a.numRanks / P;
  int offset = 0;
  for (int b = 0; b < N; ++b) {
    const int first = offset;
    for (int base = 0; base < T; base += kScanThreads) {
      const int t = base + threadIdx.x;
      const int in = t < T && a.isTokenInNode[static_cast<size_t>(t) * N + b] ? 1 : 0;
      int at = 0, total = 0;
      Scan(scratch).ExclusiveSum(in, at, total);
      if (in && a.sendList) a.sendList[offset + at] = t;
      if (t < T && a.posInNode) a.posInNode[static_cast<size_t>(t) * N + b] = in ? offset + at : -1;
      offset += total;
      __syncthreads();  // scratch is reused by the next scan
    }
    if (threadIdx.x == 0) a.numTokensPerNode[b] = offset - first;
  }
  if (!a.header) return;
  __syncthreads();  // the counts above, for every thread
  const int W = P + 3;
  for (int i = threadIdx.x; i < N * W; i += kScanThreads) {
    const int b = i / W, c = i % W;
    a.header[i] = c == 0 ? a.numTokensPerNode[b] : c <= P ? a.numTokensPerRank[b * P + c - 1] : c == P + 1 ? *a.badIds : 0;
  }
}

__device__ __forceinline__ int global_warp() { return (blockIdx.x * kThreads + threadIdx.x) / kWarpSize; }

// One warp per record.
__global__ void pack_records(NodePackArgs a) {
  const int q = global_warp(), lane = threadIdx.x % kWarpSize;
  if (q >= a.numRecords) return;
  const int t = a.list[q], S = a.scalesPerRow, k = a.topk;
  uint8_t* rec = static_cast<uint8_t*>(a.out) + static_cast<size_t>(q) * a.recordBytes;
  warp_copy<4>(rec, static_cast<const uint8_t*>(a.x) + static_cast<size_t>(t) * a.rowBytes, a.rowBytes, lane);
  float* scales = reinterpret_cast<float*>(rec + a.rowBytes);
  for (int i = lane; i < S; i += kWarpSize) scales[i] = a.xScales[static_cast<size_t>(t) * S + i];
  int32_t* ids = reinterpret_cast<int32_t*>(scales + S);
  float* weights = reinterpret_cast<float*>(ids + k);
  for (int c = lane; c < k; c += kWarpSize) {
    ids[c] = a.topkIdx[static_cast<size_t>(t) * k + c];
    weights[c] = a.topkWeights[static_cast<size_t>(t) * k + c];
  }
}

__global__ void unpack_records(NodeUnpackArgs a) {
  const int p = global_warp(), lane = threadIdx.x % kWarpSize;
  if (p >= a.numRecords) return;
  const int S = a.scalesPerRow, k = a.topk;
  const uint8_t* rec = static_cast<const uint8_t*>(a.records) + static_cast<size_t>(p) * a.recordBytes;
  warp_copy<4>(static_cast<uint8_t*>(a.x) + static_cast<size_t>(p) * a.rowBytes, rec, a.rowBytes, lane);
  const float* scales = reinterpret_cast<const float*>(rec + a.rowBytes);
  for (int i = lane; i < S; i += kWarpSize) a.xScales[static_cast<size_t>(p) * S + i] = scales[i];
  const int32_t* ids = reinterpret_cast<const int32_t*>(scales + S);
  const float* weights = reinterpret_cast<const float*>(ids + k);
  for (int c = lane; c < k; c += kWarpSize) {
    const int e = ids[c];
    a.topkIdx[static_cast<size_t>(p) * k + c] = e >= a.expertBegin && e < a.expertEnd ? e - a.expertBegin : -1;
    a.topkWeights[static_cast<size_t>(p) * k + c] = weights[c];
  }
}

// One block per token; each thread sums 8 channels at a time, in node order.
__global__ void reduce_nodes(NodeReduceArgs a) {
  const int t = blockIdx.x, N = a.numNodes, H = a.hidden, k = a.topk;
  const int32_t* pos = a.posInNode + static_cast<size_t>(t) * N;
  const int4* rows = reinterpret_cast<const int4*>(a.rows);
  const int4* b0 = a.bias0 ? reinterpret_cast<const int4*>(a.bias0 + static_cast<size_t>(t) * H) : nullptr;
  const int4* b1 = a.bias1 ? reinterpret_cast<const int4*>(a.bias1 + static_cast<size_t>(t) * H) : nullptr;
  int4* out = reinterpret_cast<int4*>(a.out + static_cast<size_t>(t) * H);
  const int vecs = H / 8;
  for (int v = threadIdx.x; v < vecs; v += blockDim.x) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int b = 0; b < N; ++b) {
      if (pos[b] >= 0) accumulate_bf16x8(acc, rows[static_cast<size_t>(pos[b]) * vecs + v]);
    }
    if (b0) accumulate_bf16x8(acc, b0[v]);
    if (b1) accumulate_bf16x8(acc, b1[v]);
    out[v] = pack_bf16x8(acc);
  }
  if (!a.outWeights) return;
  for (int c = threadIdx.x; c < k; c += blockDim.x) {
    float w = 0.0f;
    for (int b = 0; b < N; ++b) {
      if (pos[b] >= 0) w = __fadd_rn(w, a.weights[static_cast<size_t>(pos[b]) * k + c]);
    }
    a.outWeights[static_cast<size_t>(t) * k + c] = w;
  }
}

int warp_blocks(int warps) { return (warps + kWarpsPerBlock - 1) / kWarpsPerBlock; }

}  // namespace

cudaError_t LaunchNodeLayout(const NodeLayoutArgs& a, cudaStream_t stream) {
  cudaError_t err = cudaMemsetAsync(a.numTokensPerRank, 0, sizeof(int32_t) * a.numRanks, stream);
  if (err == cudaSuccess) err = cudaMemsetAsync(a.numTokensPerExpert, 0, sizeof(int32_t) * a.numExperts, stream);
  if (err == cudaSuccess) err = cudaMemsetAsync(a.badIds, 0, sizeof(int32_t), stream);
  if (err != cudaSuccess) return err;
  if (a.numTokens > 0) {
    token_layout<<<(a.numTokens + kThreads - 1) / kThreads, kThreads, 0, stream>>>(a);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  // Also with no tokens: the node counts and the header are written here.
  node_lists<<<1, kScanThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchNodePack(const NodePackArgs& a, cudaStream_t stream) {
  if (a.numRecords == 0) return cudaSuccess;
  pack_records<<<warp_blocks(a.numRecords), kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchNodeUnpack(const NodeUnpackArgs& a, cudaStream_t stream) {
  if (a.numRecords == 0) return cudaSuccess;
  unpack_records<<<warp_blocks(a.numRecords), kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchNodeReduce(const NodeReduceArgs& a, cudaStream_t stream) {
  if (a.numTokens == 0) return cudaSuccess;
  const int threads = min(kThreads, max(kWarpSize, ((a.hidden / 8 + kWarpSize - 1) / kWarpSize) * kWarpSize));
  reduce_nodes<<<a.numTokens, threads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace wideep::ep
