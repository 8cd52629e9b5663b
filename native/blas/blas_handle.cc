#include "blas/blas_handle.h"

#include "blas/blas_error.h"
#include "blas/cublaslt_loader.h"
#include "common/args.h"
#include "cuda/device_guard.h"
#include "cuda/stream.h"

namespace wideep::blas {
namespace {

constexpr napi_type_tag kBlasHandleTag = {0x7769646565702d62ULL, 0x6c61736800000001ULL};
// Shapes a process uses are few; a runaway caller must not grow the cache forever.
constexpr size_t kMaxPlans = 512;

}  // namespace

Napi::Function BlasHandle::Define(Napi::Env env) {
  return DefineClass(env, "BlasHandle",
                     {
                         StaticMethod<&BlasHandle::Fields>("fields"),
                         InstanceMethod<&BlasHandle::Matmul>("matmul"),
                         InstanceMethod<&BlasHandle::Close>("close"),
                         InstanceAccessor<&BlasHandle::GetClosed>("closed"),
                     });
}

// fields() -> {a: 0, b: 1, ..., length}
Napi::Value BlasHandle::Fields(const Napi::CallbackInfo& info) {
  return WIDEEP_FIELD_MAP(info.Env(), WIDEEP_MATMUL_FIELDS);
}

// new BlasHandle(device): needs blasLoad() to have succeeded.
BlasHandle::BlasHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BlasHandle>(info) {
  Napi::Env env = info.Env();
  device_ = static_cast<int>(ArgInt(info, 0, "device", 0, 1 << 16));
  api_ = LoadedApi();
  if (!api_) Throw(env, "ERR_BLAS_NOT_FOUND", "cuBLASLt is not loaded: call blasLoad() first");
  DeviceGuard guard(device_);
  Check(env, api_->Create(&lt_), "cublasLtCreate");
  info.This().As<Napi::Object>().TypeTag(&kBlasHandleTag);
}

BlasHandle::~BlasHandle() { Release(); }

void BlasHandle::Release() {
  plans_.clear();
  if (lt_) {
    DeviceGuard guard(device_);
    api_->Destroy(lt_);
    lt_ = nullptr;
  }
}

// matmul(baton, stream)
void BlasHandle::Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info.This().As<Napi::Object>().CheckTypeTag(&kBlasHandleTag)) ThrowInvalidArg(env, "matmul: not a BlasHandle");
  if (!lt_) Throw(env, "ERR_CLOSED", "BlasHandle is closed");
  MatmulBaton b = ReadBatonArg<MatmulField>(info, 0);
  auto stream = Stream::From(env, ArgAt(info, 1, "stream"), "stream");
  if (stream->device != device_) ThrowInvalidArg(env, "matmul: the stream is on another device than the handle");
  DeviceGuard guard(device_);
  PlanKey key = KeyOf(b);
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    if (plans_.size() >= kMaxPlans) plans_.clear();
    it = plans_.emplace(key, std::make_unique<MatmulPlan>(env, *api_, lt_, b)).first;
  }
  it->second->Launch(env, lt_, b, stream->stream);
}

void BlasHandle::Close(const Napi::CallbackInfo&) { Release(); }

Napi::Value BlasHandle::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), lt_ == nullptr); }

}  // namespace wideep::blas
