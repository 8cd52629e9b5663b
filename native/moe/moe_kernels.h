// Launchers of the small kernels of a MoE layer (no Node headers: nvcc
// compiles the .cu files; moe_binding.cc calls these).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace wideep::moe {

enum class Scoring : int { kSigmoid = 0, kSoftmax = 1 };

struct TopkArgs {
  const float* logits;    // [T, E]
  const float* bias;      // [E] added to the scores for selection only; may be null
  int32_t* topkIdx;       // [T, k]
  float* topkWeights;     // [T, k]
  int numTokens;
  int numExperts;
  int topk;
  int numGroups;          // experts split into this many equal groups
  int topkGroup;          // groups kept per token
  Scoring scoring;
  bool renormalize;
  float scale;            // routed scaling factor
  // Logical -> physical replica choice (EPLB); all null for none.
  const int32_t* staticTable;  // [E]: the replica this rank sends to
  const int32_t* log2phy;      // [E, maxReplicas]: dynamic choice among logcnt[e] replicas
  const int32_t* logcnt;       // [E]
  int maxReplicas;
  uint32_t seed;               // dynamic choice: replica of entry i = hash(seed, i) % logcnt
  int32_t* counts;             // [numCounted] += 1 per chosen id (physical when mapped); may be null
  int numCounted;
};

// The largest expert count the top-k kernel takes (32 per lane).
constexpr int kMaxTopkExperts = 1024;
constexpr int kMaxTopkGroups = 64;
constexpr int kMaxTopk = 32;

cudaError_t LaunchRouterTopk(const TopkArgs& a, cudaStream_t stream);

struct SwigluArgs {
  const uint16_t* x;      // bf16 [batch, rows, 2 * inter]: gate half, then up half
  const int32_t* counts;  // [batch] valid rows per batch entry; null: all rows
  void* out;              // bf16 or fp8 [batch, rows, inter]
  float* scales;          // fp8 only: f32 per 128 channels, row-major or K-major (below)
  int batch;
  int rows;
  int inter;
  bool fp8;
  bool roundScale;        // scales rounded up to powers of two (UE8M0-representable)
  bool kMajorScales;      // [batch, inter/128, rows] as cuBLASLt's VEC128 wants, else [batch, rows, inter/128]
};

cudaError_t LaunchSwiglu(const SwigluArgs& a, cudaStream_t stream);

struct QuantizeRowsArgs {
  const uint16_t* x;      // bf16 [rows, hidden], 8-byte aligned
  uint8_t* out;           // fp8 e4m3 [rows, hidden]
  float* scales;          // f32 [rows, hidden/128]: scale of row r, block b at r * (hidden/128) + b
  int rows;
  int hidden;             // a multiple of 128
  bool roundScale;        // scales rounded up to powers of two (UE8M0-representable)
};

cudaError_t LaunchQuantizeRows(const QuantizeRowsArgs& a, cudaStream_t stream);

struct PermuteArgs {
  const void* x;          // [N, H] rows of rowBytes
  const float* xScales;   // [N, H/128] or null
  const void* topkIdx;    // [N, k] local expert ids (i32 or i64), -1 elsewhere
  bool idx64;
  void* out;              // [L, cap, H]
  float* outScales;       // [L, H/128, cap] (K-major), or null
  int32_t* counts;        // [L], zeroed by the launcher first
  int32_t* slotOf;        // [N, k]: slot of (row, j) in its expert, -1 when none or past cap
  int32_t* overflow;      // [1]: set to 1 when an expert got more than cap rows
  int numRows;
  int topk;
  int numExperts;
  int cap;
  int rowBytes;
  int scaleBlocks;        // H/128 when scales move
};

cudaError_t LaunchPermute(const PermuteArgs& a, cudaStream_t stream);

struct UnpermuteArgs {
  const uint16_t* y;      // bf16 [L, cap, H]
  const int32_t* slotOf;  // [N, k]
  const void* topkIdx;    // [N, k]
  bool idx64;
  const float* weights;   // [N, k]
  uint16_t* out;          // bf16 [N, H]
  int numRows;
  int topk;
  int cap;
  int hidden;
};

cudaError_t LaunchUnpermute(const UnpermuteArgs& a, cudaStream_t stream);

struct Fp8MaskedGemmArgs {
  const uint8_t* x;        // fp8 e4m3 [experts, rows, k], 16-byte aligned
  const float* xScales;    // scale of (e, row, k block b) at e * xsBatch + row * xsRow + b * xsBlock
  int64_t xsBatch;
  int64_t xsRow;
  int64_t xsBlock;
  const uint8_t* w;        // fp8 e4m3 [experts, n, k], 16-byte aligned
  const float* wScales;    // f32 [experts, n/128, k/128]
  const int32_t* counts;   // [experts] valid rows per expert (clamped to [0, rows])
  uint16_t* out;           // bf16 [experts, rows, n]; rows past a count are not written
  int experts;
  int rows;
  int n;                   // a multiple of 128
  int k;                   // a multiple of 128
};

// One launch for every expert (grid n/128 x experts): see fp8_masked_gemm.cu.
cudaError_t LaunchFp8MaskedGemm(const Fp8MaskedGemmArgs& a, cudaStream_t stream);

// [batch, rows, blocks] -> [batch, blocks, ldOut] with the rows past `rows` zeroed.
cudaError_t LaunchTransposeScales(const float* in, float* out, int batch, int rows, int blocks, int ldOut,
                                  cudaStream_t stream);

}  // namespace wideep::moe
