// Argument "batons": each EP launch takes one BigInt64Array whose slots are
// named here, once. TypeScript reads the same names from batonLayout(), so the
// two sides cannot drift apart, and a launch costs one array instead of
// dozens of property lookups.
#pragma once

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

// Typed access to one baton.
template <class Field>
class Baton {
 public:
  explicit Baton(const int64_t* v) : v_(v) {}
  int64_t operator[](Field f) const { return v_[static_cast<int>(f)]; }
  int Int(Field f) const { return static_cast<int>(v_[static_cast<int>(f)]); }
  template <class T>
  T* Ptr(Field f) const {
    return reinterpret_cast<T*>(static_cast<uintptr_t>(v_[static_cast<int>(f)]));
  }

 private:
  const int64_t* v_;
};

}  // namespace wideep::ep
