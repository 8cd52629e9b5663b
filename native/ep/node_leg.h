// Launchers of the kernels of the hierarchical (across-nodes) normal mode's
// network leg: the node layout, the packing of records for the network, the
// forwarder's unpacking, and the origin's reduce over nodes
// (docs/architecture.md "EP across nodes"). No Node headers: nvcc compiles
// node_leg.cu, node_leg_binding.cc calls these.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace wideep::ep {

// Which ranks, experts and nodes each token goes to, and per node the
// ascending list of its tokens (the network leg's send order).
struct NodeLayoutArgs {
  const int32_t* topkIdx;       // [T, k] global expert ids, -1 = none
  int numTokens;
  int topk;
  int numExperts;
  int numRanks;
  int ranksPerNode;
  uint8_t* isTokenInRank;       // [T, R]
  int32_t* numTokensPerRank;    // [R]
  int32_t* numTokensPerExpert;  // [E]
  uint8_t* isTokenInNode;       // [T, N]
  int32_t* numTokensPerNode;    // [N]
  int32_t* sendList;            // [T * N]: node 0's tokens, then node 1's, ...; null: not wanted
  int32_t* posInNode;           // [T, N]: the token's place in sendList, -1 where it does not go; null: not wanted
  int32_t* header;              // [N, P + 3]: per node [tokens, tokens per rank of it (P), bad ids, 0 (no failure)]; null: not wanted
  int32_t* badIds;              // [1]: ids outside [-1, E)
};

cudaError_t LaunchNodeLayout(const NodeLayoutArgs& a, cudaStream_t stream);

// A record: the row, then its f32 scales, then (routed) its k i32 ids and k
// f32 weights; recordBytes (a multiple of 16) at least that.
struct NodePackArgs {
  const void* x;            // [T, rowBytes]
  const float* xScales;     // [T, scalesPerRow] or null
  const int32_t* topkIdx;   // [T, k] or null (topk 0)
  const float* topkWeights; // [T, k] or null (topk 0)
  const int32_t* list;      // [numRecords] token of each record
  int numRecords;
  int rowBytes;
  int scalesPerRow;
  int topk;                 // 0: no ids or weights (a cached dispatch)
  int recordBytes;
  void* out;                // [numRecords, recordBytes]
};

cudaError_t LaunchNodePack(const NodePackArgs& a, cudaStream_t stream);

// The forwarder's side: records back into rows, scales, and ids of this
// node's experts (global id - expertBegin inside [expertBegin, expertEnd), -1 elsewhere).
struct NodeUnpackArgs {
  const void* records;
  int numRecords;
  int rowBytes;
  int scalesPerRow;
  int topk;
  int recordBytes;
  int expertBegin;
  int expertEnd;
  void* x;
  float* xScales;
  int32_t* topkIdx;
  float* topkWeights;
};

cudaError_t LaunchNodeUnpack(const NodeUnpackArgs& a, cudaStream_t stream);

// The origin's combine: out[t] = bf16(sum over nodes b, ascending, of
// rows[posInNode[t, b]] in f32, then + bias0[t], + bias1[t]); weights summed alike.
struct NodeReduceArgs {
  const uint16_t* rows;      // bf16 [n, H]: the nodes' partials, in sendList order
  const float* weights;      // [n, k] or null
  const int32_t* posInNode;  // [T, N]
  int numTokens;
  int numNodes;
  int hidden;
  int topk;
  const uint16_t* bias0;     // [T, H] or null
  const uint16_t* bias1;     // [T, H] or null
  uint16_t* out;             // [T, H]
  float* outWeights;         // [T, k] or null
};

cudaError_t LaunchNodeReduce(const NodeReduceArgs& a, cudaStream_t stream);

}  // namespace wideep::ep
