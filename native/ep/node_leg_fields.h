// The baton slots of the network-leg kernels (src/ep/cuda/node/kernels.ts
// reads the same names from nodeLegFields()).
#pragma once

#define WIDEEP_NODE_LAYOUT_FIELDS(X)                                                                  \
  X(topkIdx) X(numTokens) X(topk) X(numExperts) X(numRanks) X(ranksPerNode) X(isTokenInRank)          \
  X(numTokensPerRank) X(numTokensPerExpert) X(isTokenInNode) X(numTokensPerNode) X(sendList) X(posInNode) \
  X(header) X(badIds)

#define WIDEEP_NODE_PACK_FIELDS(X) \
  X(x) X(xScales) X(topkIdx) X(topkWeights) X(list) X(numRecords) X(rowBytes) X(scalesPerRow) X(topk) X(recordBytes) X(out)

#define WIDEEP_NODE_UNPACK_FIELDS(X)                                                                    \
  X(records) X(numRecords) X(rowBytes) X(scalesPerRow) X(topk) X(recordBytes) X(expertBegin) X(expertEnd) \
  X(x) X(xScales) X(topkIdx) X(topkWeights)

#define WIDEEP_NODE_REDUCE_FIELDS(X) \
  X(rows) X(weights) X(posInNode) X(numTokens) X(numNodes) X(hidden) X(topk) X(bias0) X(bias1) X(out) X(outWeights)

namespace wideep::ep {

#define WIDEEP_ENUM_ENTRY(name) name,
enum class NodeLayoutField { WIDEEP_NODE_LAYOUT_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
enum class NodePackField { WIDEEP_NODE_PACK_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
enum class NodeUnpackField { WIDEEP_NODE_UNPACK_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
enum class NodeReduceField { WIDEEP_NODE_REDUCE_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
#undef WIDEEP_ENUM_ENTRY

}  // namespace wideep::ep
