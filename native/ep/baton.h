// The slots of the EP launches' batons (common/baton.h), named here once;
// TypeScript reads the same names from EpBuffer.batonLayout().
#pragma once

#include "common/baton.h"

#define WIDEEP_CONFIG_FIELDS(X)                                                                          \
  X(maxTokens) X(llMaxTokens) X(maxTopk) X(numExperts) X(numLocalExperts) X(timeoutMs) X(slab0)          \
  X(slabStride) X(slabX) X(slabScales) X(slabTopkIdx) X(slabTopkWeights) X(slabSrcIdx) X(combineX)      \
  X(combineWeights) X(combineFlags) X(llHalf0) X(llHalfStride) X(llStaging) X(llStagingStride) X(llSrcTopk) X(llSrcRank) X(llSrcCount) X(llRecvX) \
  X(llRecvScales) X(llSrcInfo) X(llLayoutRange) X(llRecvCount) X(llCombineIn) X(llSlotOf) X(llCombineRecv) \
  X(notifyScratch)

#define WIDEEP_NOTIFY_FIELDS(X)                                                                       \
  X(topkIdx) X(idx64) X(numTokens) X(topk) X(expertAlignment) X(numWorstTokens) X(cached)            \
  X(layoutOnly) X(signature) X(sendPos) X(numTokensPerRank) X(numTokensPerExpert) X(isTokenInRank)   \
  X(meta) X(countsSlot) X(slot) X(call) X(localError)

#define WIDEEP_DISPATCH_FIELDS(X)                                                                     \
  X(slot) X(numTokens) X(hidden) X(elemBytes) X(hasScales) X(topk) X(idx64) X(numWorstTokens) X(x)   \
  X(xScales) X(topkIdx) X(topkWeights) X(sendPos) X(meta) X(numSms)

#define WIDEEP_COMBINE_FIELDS(X)                                                                      \
  X(slot) X(numTokens) X(numRows) X(hidden) X(topk) X(x) X(topkWeights) X(bias0) X(bias1) X(out)     \
  X(outWeights) X(sendPos) X(meta) X(numSms) X(numSendSms) X(call) X(localError)

#define WIDEEP_LL_FIELDS(X)                                                                           \
  X(half) X(numTokens) X(hidden) X(topk) X(useFp8) X(roundScale) X(idx64) X(x) X(topkIdx)            \
  X(topkWeights) X(y) X(out) X(cumulativeStats) X(numSms) X(call) X(localError)

namespace wideep::ep {

#define WIDEEP_ENUM_ENTRY(name) name,
enum class ConfigField { WIDEEP_CONFIG_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
enum class NotifyField { WIDEEP_NOTIFY_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
enum class DispatchField { WIDEEP_DISPATCH_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
enum class CombineField { WIDEEP_COMBINE_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
enum class LowLatencyField { WIDEEP_LL_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
#undef WIDEEP_ENUM_ENTRY

}  // namespace wideep::ep
