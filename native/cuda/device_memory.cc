#include "cuda/device_memory.h"

#include "common/args.h"
#include "cuda/cuda_error.h"
#include "cuda/device_guard.h"

namespace wideep {
namespace {

constexpr napi_type_tag kDeviceMemoryTag = {0x7769646565702d6dULL, 0x656d6f7279000003ULL};
constexpr int64_t kMaxAllocationBytes = int64_t{1} << 50;

}  // namespace

Napi::Function DeviceMemory::Define(Napi::Env env) {
  return DefineClass(env, "DeviceMemory",
                     {
                         InstanceMethod<&DeviceMemory::Close>("close"),
                         InstanceAccessor<&DeviceMemory::GetPtr>("ptr"),
                         InstanceAccessor<&DeviceMemory::GetBytes>("bytes"),
                         InstanceAccessor<&DeviceMemory::GetDevice>("device"),
                         InstanceAccessor<&DeviceMemory::GetClosed>("closed"),
                     });
}

// new DeviceMemory(bytes, stream): allocated on the stream's device, in its order.
DeviceMemory::DeviceMemory(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceMemory>(info) {
  Napi::Env env = info.Env();
  bytes_ = static_cast<size_t>(ArgInt(info, 0, "bytes", 0, kMaxAllocationBytes));
  stream_ = Stream::From(env, ArgAt(info, 1, "stream"), "stream");
  device_ = stream_->device;
  if (bytes_ > 0) {
    DeviceGuard guard(device_);
    cudaError_t st = cudaMallocAsync(&ptr_, bytes_, stream_->stream);
    if (st != cudaSuccess) {
      cudaGetLastError();  // out-of-memory is not sticky; keep the context usable
      ptr_ = nullptr;
      throw MakeError(env, CudaFailure(st, "cudaMallocAsync(" + std::to_string(bytes_) + " bytes)"));
    }
  }
  info.This().As<Napi::Object>().TypeTag(&kDeviceMemoryTag);
}

DeviceMemory::~DeviceMemory() {
  if (!closed_ && stream_) Free(stream_->stream);
}

void DeviceMemory::Free(cudaStream_t stream) {
  closed_ = true;
  if (ptr_) {
    DeviceGuard guard(device_);
    cudaFreeAsync(ptr_, stream);
    ptr_ = nullptr;
  }
  stream_.reset();
}

// close([stream]): frees after the work queued on `stream` (default: the allocation stream).
void DeviceMemory::Close(const Napi::CallbackInfo& info) {
  if (closed_) return;
  Napi::Env env = info.Env();
  std::shared_ptr<StreamResource> on = stream_;
  if (info.Length() > 0 && !info[0].IsUndefined()) on = Stream::From(env, info[0], "stream");
  if (on->device != device_) ThrowInvalidArg(env, "close(stream): the stream is on another device");
  Free(on->stream);
}

Napi::Value DeviceMemory::GetPtr(const Napi::CallbackInfo& info) { return PtrToJs(info.Env(), ptr_); }

Napi::Value DeviceMemory::GetBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(bytes_));
}

Napi::Value DeviceMemory::GetDevice(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), device_); }

Napi::Value DeviceMemory::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed_); }

}  // namespace wideep
