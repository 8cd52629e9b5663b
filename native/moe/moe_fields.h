// The baton slots of the MoE kernels (src/moe/fields.ts reads the same names
// from moeFields()).
#pragma once

#define WIDEEP_TOPK_FIELDS(X)                                                                            \
  X(logits) X(bias) X(topkIdx) X(topkWeights) X(numTokens) X(numExperts) X(topk) X(numGroups) X(topkGroup) \
  X(scoring) X(renormalize) X(scaleBits) X(staticTable) X(log2phy) X(logcnt) X(maxReplicas) X(seed)       \
  X(counts) X(numCounted)

#define WIDEEP_SWIGLU_FIELDS(X) \
  X(x) X(counts) X(out) X(scales) X(batch) X(rows) X(inter) X(fp8) X(roundScale) X(kMajorScales)

#define WIDEEP_QUANTIZE_ROWS_FIELDS(X) X(x) X(out) X(scales) X(rows) X(hidden) X(roundScale)

#define WIDEEP_FP8_MASKED_GEMM_FIELDS(X) \
  X(x) X(xScales) X(xsBatch) X(xsRow) X(xsBlock) X(w) X(wScales) X(counts) X(out) X(experts) X(rows) X(n) X(k)

#define WIDEEP_PERMUTE_FIELDS(X)                                                                         \
  X(x) X(xScales) X(topkIdx) X(idx64) X(out) X(outScales) X(counts) X(slotOf) X(overflow) X(numRows)     \
  X(topk) X(numExperts) X(cap) X(rowBytes) X(scaleBlocks)

#define WIDEEP_UNPERMUTE_FIELDS(X) \
  X(y) X(slotOf) X(topkIdx) X(idx64) X(weights) X(out) X(numRows) X(topk) X(cap) X(hidden)

namespace wideep::moe {

#define WIDEEP_ENUM_ENTRY(name) name,
enum class TopkField { WIDEEP_TOPK_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
enum class SwigluField { WIDEEP_SWIGLU_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
enum class QuantizeRowsField { WIDEEP_QUANTIZE_ROWS_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
enum class Fp8MaskedGemmField { WIDEEP_FP8_MASKED_GEMM_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
enum class PermuteField { WIDEEP_PERMUTE_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
enum class UnpermuteField { WIDEEP_UNPERMUTE_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
#undef WIDEEP_ENUM_ENTRY

}  // namespace wideep::moe
