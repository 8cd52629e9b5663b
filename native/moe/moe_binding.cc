#include "moe/moe_binding.h"

#include "common/args.h"
#include "common/baton.h"
#include "cuda/on_stream.h"
#include "moe/moe_fields.h"
#include "moe/moe_kernels.h"
#include "tensor/tensor_fill.h"

namespace wideep::moe {
namespace {

Napi::Value Fields(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("topk", WIDEEP_FIELD_MAP(env, WIDEEP_TOPK_FIELDS));
  o.Set("swiglu", WIDEEP_FIELD_MAP(env, WIDEEP_SWIGLU_FIELDS));
  o.Set("quantizeRows", WIDEEP_FIELD_MAP(env, WIDEEP_QUANTIZE_ROWS_FIELDS));
  o.Set("fp8MaskedGemm", WIDEEP_FIELD_MAP(env, WIDEEP_FP8_MASKED_GEMM_FIELDS));
  o.Set("permute", WIDEEP_FIELD_MAP(env, WIDEEP_PERMUTE_FIELDS));
  o.Set("unpermute", WIDEEP_FIELD_MAP(env, WIDEEP_UNPERMUTE_FIELDS));
  o.Set("maxTopkExperts", kMaxTopkExperts);
  o.Set("maxTopkGroups", kMaxTopkGroups);
  o.Set("maxTopk", kMaxTopk);
  return o;
}

void RouterTopk(const Napi::CallbackInfo& info) {
  using F = TopkField;
  auto b = ReadBatonArg<F>(info, 0);
  TopkArgs a{};
  a.logits = b.Ptr<const float>(F::logits);
  a.bias = b.Ptr<const float>(F::bias);
  a.topkIdx = b.Ptr<int32_t>(F::topkIdx);
  a.topkWeights = b.Ptr<float>(F::topkWeights);
  a.numTokens = b.Int(F::numTokens);
  a.numExperts = b.Int(F::numExperts);
  a.topk = b.Int(F::topk);
  a.numGroups = b.Int(F::numGroups);
  a.topkGroup = b.Int(F::topkGroup);
  a.scoring = static_cast<Scoring>(b.Int(F::scoring));
  a.renormalize = b[F::renormalize] != 0;
  a.scale = b.Float(F::scaleBits);
  a.staticTable = b.Ptr<const int32_t>(F::staticTable);
  a.log2phy = b.Ptr<const int32_t>(F::log2phy);
  a.logcnt = b.Ptr<const int32_t>(F::logcnt);
  a.maxReplicas = b.Int(F::maxReplicas);
  a.seed = static_cast<uint32_t>(b[F::seed]);
  a.counts = b.Ptr<int32_t>(F::counts);
  a.numCounted = b.Int(F::numCounted);
  // The kernel indexes fixed-size tables with these: the last guard against a bad call.
  if (a.numExperts < 1 || a.numExperts > kMaxTopkExperts || a.numGroups < 1 || a.numGroups > kMaxTopkGroups ||
      a.numExperts % a.numGroups != 0 || a.topk < 1 || a.topk > kMaxTopk || a.topkGroup < 1 ||
      a.topkGroup > a.numGroups) {
    ThrowInvalidArg(info.Env(), "routerTopk: experts, groups or k out of range");
  }
  OnStream(info, 1, "routerTopk", [&](cudaStream_t s) { return LaunchRouterTopk(a, s); });
}

void Swiglu(const Napi::CallbackInfo& info) {
  using F = SwigluField;
  auto b = ReadBatonArg<F>(info, 0);
  SwigluArgs a{};
  a.x = b.Ptr<const uint16_t>(F::x);
  a.counts = b.Ptr<const int32_t>(F::counts);
  a.out = b.Ptr<void>(F::out);
  a.scales = b.Ptr<float>(F::scales);
  a.batch = b.Int(F::batch);
  a.rows = b.Int(F::rows);
  a.inter = b.Int(F::inter);
  a.fp8 = b[F::fp8] != 0;
  a.roundScale = b[F::roundScale] != 0;
  a.kMajorScales = b[F::kMajorScales] != 0;
  if (a.inter % 128 != 0 || a.batch > 65535) ThrowInvalidArg(info.Env(), "swiglu: inter must be a multiple of 128");
  OnStream(info, 1, "swiglu", [&](cudaStream_t s) { return LaunchSwiglu(a, s); });
}

void QuantizeRows(const Napi::CallbackInfo& info) {
  using F = QuantizeRowsField;
  auto b = ReadBatonArg<F>(info, 0);
  const int64_t rows = b[F::rows], hidden = b[F::hidden];
  // The kernel reads 4 channels per lane of a 128-channel block and indexes scales by row * (hidden / 128).
  if (rows < 0 || rows > INT32_MAX || hidden <= 0 || hidden > INT32_MAX || hidden % 128 != 0) {
    ThrowInvalidArg(info.Env(), "quantizeRows: rows must be in [0, 2^31) and hidden a positive multiple of 128");
  }
  QuantizeRowsArgs a{};
  a.x = b.Ptr<const uint16_t>(F::x);
  a.out = b.Ptr<uint8_t>(F::out);
  a.scales = b.Ptr<float>(F::scales);
  a.rows = static_cast<int>(rows);
  a.hidden = static_cast<int>(hidden);
  a.roundScale = b[F::roundScale] != 0;
  if (a.rows > 0 && (!a.x || !a.out || !a.scales)) ThrowInvalidArg(info.Env(), "quantizeRows: x, out and scales must be set");
  OnStream(info, 1, "quantizeRows", [&](cudaStream_t s) { return LaunchQuantizeRows(a, s); });
}

void Fp8MaskedGemm(const Napi::CallbackInfo& info) {
  using F = Fp8MaskedGemmField;
  auto b = ReadBatonArg<F>(info, 0);
  const int64_t experts = b[F::experts], rows = b[F::rows], n = b[F::n], k = b[F::k];
  // The kernel tiles n and k by 128, loads 16-byte chunks, and puts experts on the grid's y axis.
  if (experts < 0 || experts > 65535 || rows < 0 || rows > INT32_MAX || n < 0 || n > INT32_MAX || n % 128 != 0 ||
      k <= 0 || k > INT32_MAX || k % 128 != 0) {
    ThrowInvalidArg(info.Env(), "fp8MaskedGemm: experts must be in [0, 65535], n a multiple of 128 and k a positive one");
  }
  const int64_t ptrs[] = {b[F::x], b[F::w], b[F::out]};
  for (int64_t p : ptrs) {
    if (p == 0 || p % 16 != 0) ThrowInvalidArg(info.Env(), "fp8MaskedGemm: x, w and out must be set and 16-byte aligned");
  }
  const int64_t words[] = {b[F::xScales], b[F::wScales], b[F::counts]};
  for (int64_t p : words) {
    if (p == 0 || p % 4 != 0) ThrowInvalidArg(info.Env(), "fp8MaskedGemm: xScales, wScales and counts must be set and 4-byte aligned");
  }
  Fp8MaskedGemmArgs a{};
  a.x = b.Ptr<const uint8_t>(F::x);
  a.xScales = b.Ptr<const float>(F::xScales);
  a.xsBatch = b[F::xsBatch];
  a.xsRow = b[F::xsRow];
  a.xsBlock = b[F::xsBlock];
  a.w = b.Ptr<const uint8_t>(F::w);
  a.wScales = b.Ptr<const float>(F::wScales);
  a.counts = b.Ptr<const int32_t>(F::counts);
  a.out = b.Ptr<uint16_t>(F::out);
  a.experts = static_cast<int>(experts);
  a.rows = static_cast<int>(rows);
  a.n = static_cast<int>(n);
  a.k = static_cast<int>(k);
  OnStream(info, 1, "fp8MaskedGemm", [&](cudaStream_t s) { return LaunchFp8MaskedGemm(a, s); });
}

void Permute(const Napi::CallbackInfo& info) {
  using F = PermuteField;
  auto b = ReadBatonArg<F>(info, 0);
  PermuteArgs a{};
  a.x = b.Ptr<const void>(F::x);
  a.xScales = b.Ptr<const float>(F::xScales);
  a.topkIdx = b.Ptr<const void>(F::topkIdx);
  a.idx64 = b[F::idx64] != 0;
  a.out = b.Ptr<void>(F::out);
  a.outScales = b.Ptr<float>(F::outScales);
  a.counts = b.Ptr<int32_t>(F::counts);
  a.slotOf = b.Ptr<int32_t>(F::slotOf);
  a.overflow = b.Ptr<int32_t>(F::overflow);
  a.numRows = b.Int(F::numRows);
  a.topk = b.Int(F::topk);
  a.numExperts = b.Int(F::numExperts);
  a.cap = b.Int(F::cap);
  a.rowBytes = b.Int(F::rowBytes);
  a.scaleBlocks = b.Int(F::scaleBlocks);
  if (a.rowBytes % 16 != 0) ThrowInvalidArg(info.Env(), "permute: rows must be a multiple of 16 bytes");
  OnStream(info, 1, "permute", [&](cudaStream_t s) { return LaunchPermute(a, s); });
}

void Unpermute(const Napi::CallbackInfo& info) {
  using F = UnpermuteField;
  auto b = ReadBatonArg<F>(info, 0);
  UnpermuteArgs a{};
  a.y = b.Ptr<const uint16_t>(F::y);
  a.slotOf = b.Ptr<const int32_t>(F::slotOf);
  a.topkIdx = b.Ptr<const void>(F::topkIdx);
  a.idx64 = b[F::idx64] != 0;
  a.weights = b.Ptr<const float>(F::weights);
  a.out = b.Ptr<uint16_t>(F::out);
  a.numRows = b.Int(F::numRows);
  a.topk = b.Int(F::topk);
  a.cap = b.Int(F::cap);
  a.hidden = b.Int(F::hidden);
  if (a.hidden % 8 != 0) ThrowInvalidArg(info.Env(), "unpermute: hidden must be a multiple of 8");
  OnStream(info, 1, "unpermute", [&](cudaStream_t s) { return LaunchUnpermute(a, s); });
}

// transposeScales(in, out, batch, rows, blocks, ldOut, stream)
void TransposeScales(const Napi::CallbackInfo& info) {
  const float* in = reinterpret_cast<const float*>(ArgPtr(info, 0, "in"));
  float* out = reinterpret_cast<float*>(ArgPtr(info, 1, "out"));
  int batch = static_cast<int>(ArgInt(info, 2, "batch", 0, 65535));
  int rows = static_cast<int>(ArgInt(info, 3, "rows", 0, INT32_MAX));
  int blocks = static_cast<int>(ArgInt(info, 4, "blocks", 0, INT32_MAX));
  int ldOut = static_cast<int>(ArgInt(info, 5, "ldOut", rows, INT32_MAX));
  OnStream(info, 6, "transposeScales",
           [&](cudaStream_t s) { return LaunchTransposeScales(in, out, batch, rows, blocks, ldOut, s); });
}

// fillValue(ptr, numel, type, value, stream)
void FillValue(const Napi::CallbackInfo& info) {
  void* ptr = reinterpret_cast<void*>(ArgPtr(info, 0, "ptr"));
  int64_t numel = ArgInt(info, 1, "numel", 0, INT64_MAX);
  auto type = static_cast<FillType>(ArgInt(info, 2, "type", 0, static_cast<int>(FillType::kI32)));
  Napi::Value v = ArgAt(info, 3, "value");
  if (!v.IsNumber()) ThrowInvalidArg(info.Env(), "fillValue: value must be a number");
  double value = v.As<Napi::Number>().DoubleValue();
  OnStream(info, 4, "fillValue", [&](cudaStream_t s) { return LaunchFillValue(ptr, numel, type, value, s); });
}

// fillRandom(ptr, numel, type, distribution, seed, a, b, stream)
void FillRandom(const Napi::CallbackInfo& info) {
  void* ptr = reinterpret_cast<void*>(ArgPtr(info, 0, "ptr"));
  int64_t numel = ArgInt(info, 1, "numel", 0, int64_t{1} << 32);
  auto type = static_cast<FillType>(ArgInt(info, 2, "type", 0, static_cast<int>(FillType::kFp8E4m3)));
  auto dist = static_cast<FillDistribution>(ArgInt(info, 3, "distribution", 0, 1));
  auto seed = static_cast<uint32_t>(ArgInt(info, 4, "seed", 0, UINT32_MAX));
  Napi::Value av = ArgAt(info, 5, "a"), bv = ArgAt(info, 6, "b");
  if (!av.IsNumber() || !bv.IsNumber()) ThrowInvalidArg(info.Env(), "fillRandom: a and b must be numbers");
  float a = av.As<Napi::Number>().FloatValue(), b = bv.As<Napi::Number>().FloatValue();
  OnStream(info, 7, "fillRandom", [&](cudaStream_t s) { return LaunchFillRandom(ptr, numel, type, dist, seed, a, b, s); });
}

}  // namespace

void Register(Napi::Env env, Napi::Object cuda) {
  cuda.Set("moeFields", Napi::Function::New(env, Fields, "moeFields"));
  cuda.Set("routerTopk", Napi::Function::New(env, RouterTopk, "routerTopk"));
  cuda.Set("swiglu", Napi::Function::New(env, Swiglu, "swiglu"));
  cuda.Set("quantizeRows", Napi::Function::New(env, QuantizeRows, "quantizeRows"));
  cuda.Set("fp8MaskedGemm", Napi::Function::New(env, Fp8MaskedGemm, "fp8MaskedGemm"));
  cuda.Set("permute", Napi::Function::New(env, Permute, "permute"));
  cuda.Set("unpermute", Napi::Function::New(env, Unpermute, "unpermute"));
  cuda.Set("transposeScales", Napi::Function::New(env, TransposeScales, "transposeScales"));
  cuda.Set("fillValue", Napi::Function::New(env, FillValue, "fillValue"));
  cuda.Set("fillRandom", Napi::Function::New(env, FillRandom, "fillRandom"));
}

}  // namespace wideep::moe
