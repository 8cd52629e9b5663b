#include "ep/baseline_binding.h"

#include "common/args.h"
#include "cuda/cuda_error.h"
#include "cuda/device_guard.h"
#include "cuda/stream.h"
#include "ep/ep_kernels.h"

namespace wideep::ep {
namespace {

struct RowArgs {
  void* a;
  const void* b;
  const int32_t* idx;
  int n;
  int width;
  int numSms;
};

RowArgs ReadRowArgs(const Napi::CallbackInfo& info, const char* widthName) {
  RowArgs r;
  r.a = reinterpret_cast<void*>(ArgPtr(info, 0, "dst"));
  r.b = reinterpret_cast<const void*>(ArgPtr(info, 1, "src"));
  r.idx = reinterpret_cast<const int32_t*>(ArgPtr(info, 2, "idx"));
  r.n = static_cast<int>(ArgInt(info, 3, "n", 0, INT32_MAX));
  r.width = static_cast<int>(ArgInt(info, 4, widthName, 0, INT32_MAX));
  r.numSms = static_cast<int>(ArgInt(info, 5, "numSms", 1, 1024));
  return r;
}

}  // namespace

void GatherRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RowArgs r = ReadRowArgs(info, "rowBytes");
  if (r.width % 16 != 0) ThrowInvalidArg(env, "gatherRows: rowBytes must be a multiple of 16");
  auto stream = Stream::From(env, ArgAt(info, 6, "stream"), "stream");
  DeviceGuard guard(stream->device);
  WIDEEP_CUDA_THROW(env, LaunchGatherRows(r.a, r.b, r.idx, r.n, r.width, r.numSms, stream->stream));
}

void ScatterAddBf16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RowArgs r = ReadRowArgs(info, "hidden");
  if (r.width % 2 != 0) ThrowInvalidArg(env, "scatterAddBf16: hidden must be even");
  auto stream = Stream::From(env, ArgAt(info, 6, "stream"), "stream");
  DeviceGuard guard(stream->device);
  WIDEEP_CUDA_THROW(env, LaunchScatterAddBf16(r.a, r.b, r.idx, r.n, r.width, r.numSms, stream->stream));
}

}  // namespace wideep::ep
