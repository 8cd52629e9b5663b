// The fused router top-k: scores (sigmoid or softmax), group-limited
// selection with a correction bias, renormalisation, the routed scaling
// factor and the logical -> physical replica choice, one warp per token.
//
// Scores and selection values are computed in double, exactly as the cpu
// pipeline's gate does, so the same logits give the same experts on both
// (ties go to the lower index everywhere).
#include <cuda_runtime.h>

#include "moe/moe_kernels.h"
#include "common/counter_hash.cuh"

namespace wideep::moe {
namespace {

constexpr int kWarpsPerBlock = 2;

struct Best {
  double v;
  int i;
};

__device__ __forceinline__ bool Better(double v, int i, const Best& b) {
  return b.i < 0 || v > b.v || (v == b.v && i < b.i);
}

__device__ __forceinline__ Best WarpBest(Best b) {
  for (int off = 16; off > 0; off >>= 1) {
    double v = __shfl_xor_sync(0xffffffffu, b.v, off);
    int i = __shfl_xor_sync(0xffffffffu, b.i, off);
    if (i >= 0 && Better(v, i, b)) b = {v, i};
  }
  return b;
}

__device__ __forceinline__ double WarpSum(double v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ double WarpMax(double v) {
  for (int off = 16; off > 0; off >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

__global__ void RouterTopkKernel(TopkArgs a) {
  extern __shared__ double smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = blockIdx.x * kWarpsPerBlock + warp;
  if (t >= a.numTokens) return;
  const int E = a.numExperts, G = a.numGroups, per = E / G;
  double* choice = smem + warp * (E + kMaxTopkGroups);
  double* groupScore = choice + E;
  __shared__ int selected[kWarpsPerBlock][kMaxTopk];
  const float* logits = a.logits + static_cast<size_t>(t) * E;

  const int chunk = (E + 31) / 32;
  const int begin = min(E, lane * chunk), end = min(E, begin + chunk);

  // Softmax needs the row's max and sum; sigmoid needs neither.
  double rowMax = 0, rowSum = 1;
  if (a.scoring == Scoring::kSoftmax) {
    double m = -INFINITY;
    for (int e = begin; e < end; ++e) m = fmax(m, static_cast<double>(logits[e]));
    rowMax = WarpMax(m);
    double s = 0;
    for (int e = begin; e < end; ++e) s += exp(static_cast<double>(logits[e]) - rowMax);
    rowSum = WarpSum(s);
  }
  auto score = [&](int e) {
    double l = static_cast<double>(logits[e]);
    return a.scoring == Scoring::kSigmoid ? 1.0 / (1.0 + exp(-l)) : exp(l - rowMax) / rowSum;
  };
  for (int e = begin; e < end; ++e) choice[e] = score(e) + (a.bias ? static_cast<double>(a.bias[e]) : 0.0);
  __syncwarp();

  // Each group scores the sum of its two best selection values (its one, for groups of one).
  for (int g = lane; g < G; g += 32) {
    Best b1{0, -1}, b2{0, -1};
    for (int e = g * per; e < (g + 1) * per; ++e) {
      double v = choice[e];
      if (Better(v, e, b1)) {
        b2 = b1;
        b1 = {v, e};
      } else if (Better(v, e, b2)) {
        b2 = {v, e};
      }
    }
    groupScore[g] = per >= 2 ? 0.0 + b1.v + b2.v : 0.0 + b1.v;
  }
  __syncwarp();

  uint64_t keptGroups = 0;
  for (int r = 0; r < a.topkGroup; ++r) {
    Best b{0, -1};
    for (int g = lane; g < G; g += 32) {
      if (!((keptGroups >> g) & 1) && Better(groupScore[g], g, b)) b = {groupScore[g], g};
    }
    b = WarpBest(b);
    if (b.i >= 0) keptGroups |= uint64_t{1} << b.i;
  }

  uint32_t taken = 0;  // bit (e - begin) of this lane's chunk
  for (int j = 0; j < a.topk; ++j) {
    Best b{0, -1};
    for (int e = begin; e < end; ++e) {
      if (((taken >> (e - begin)) & 1) || !((keptGroups >> (e / per)) & 1)) continue;
      if (Better(choice[e], e, b)) b = {choice[e], e};
    }
    b = WarpBest(b);
    if (b.i >= begin && b.i < end) taken |= 1u << (b.i - begin);
    if (lane == 0) selected[warp][j] = b.i;
  }
  __syncwarp();

  // Weights: the unbiased scores of the chosen experts, renormalised in selection order.
  double sum = 0;
  for (int j = 0; j < a.topk; ++j) sum += score(selected[warp][j]);
  const double norm = a.renormalize ? 1.0 / (sum + 1e-20) : 1.0;
  for (int j = lane; j < a.topk; j += 32) {
    const int e = selected[warp][j];
    const size_t at = static_cast<size_t>(t) * a.topk + j;
    int id = e;
    if (a.staticTable) {
      id = a.staticTable[e];
    } else if (a.log2phy) {
      const int cnt = a.logcnt[e];
      const int r = min(cnt - 1, static_cast<int>(floor(CounterUniform(a.seed, static_cast<uint32_t>(at)) * cnt)));
      id = a.log2phy[e * a.maxReplicas + r];
    }
    a.topkIdx[at] = id;
    a.topkWeights[at] = static_cast<float>(score(e) * norm * a.scale);
    if (a.counts && id >= 0 && id < a.numCounted) atomicAdd(a.counts + id, 1);
  }
}

}  // namespace

cudaError_t LaunchRouterTopk(const TopkArgs& a, cudaStream_t stream) {
  if (a.numTokens == 0) return cudaSuccess;
  const int blocks = (a.numTokens + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const size_t smem = sizeof(double) * kWarpsPerBlock * (a.numExperts + kMaxTopkGroups);
  RouterTopkKernel<<<blocks, kWarpsPerBlock * 32, smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace wideep::moe
