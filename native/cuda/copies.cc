#include "cuda/copies.h"

#include <cstring>
#include <memory>

#include "common/args.h"
#include "common/promise_worker.h"
#include "cuda/cuda_error.h"
#include "cuda/device_guard.h"
#include "cuda/event.h"
#include "cuda/stream.h"

namespace wideep {
namespace {

// Pinned host memory: copies from it are truly asynchronous, so the JS thread
// only queues work and never waits for the stream.
struct PinnedBuffer {
  void* ptr = nullptr;
  ~PinnedBuffer() {
    if (ptr) cudaFreeHost(ptr);
  }
};

// Waits for the copy's event on a pool thread, then (for device-to-host)
// moves the staged bytes into the JS buffer.
class CopyWorker : public PromiseWorker {
 public:
  CopyWorker(Napi::Env env, std::shared_ptr<EventResource> done, std::unique_ptr<PinnedBuffer> staging,
             Napi::TypedArray hostTarget, size_t bytes)
      : PromiseWorker(env, "wideep:copy"), done_(std::move(done)), staging_(std::move(staging)), bytes_(bytes) {
    if (!hostTarget.IsEmpty()) {
      target_ = Napi::Persistent(hostTarget);
      targetData_ = static_cast<uint8_t*>(hostTarget.ArrayBuffer().Data()) + hostTarget.ByteOffset();
    }
  }

 protected:
  Failure Run() override {
    WIDEEP_CUDA_RETURN(cudaSetDevice(done_->device));
    WIDEEP_CUDA_RETURN(cudaEventSynchronize(done_->event));
    if (targetData_ && bytes_ > 0) std::memcpy(targetData_, staging_->ptr, bytes_);
    return {};
  }

 private:
  std::shared_ptr<EventResource> done_;
  std::unique_ptr<PinnedBuffer> staging_;
  Napi::Reference<Napi::TypedArray> target_;
  uint8_t* targetData_ = nullptr;
  size_t bytes_;
};

std::unique_ptr<PinnedBuffer> AllocPinned(Napi::Env env, size_t bytes) {
  auto buf = std::make_unique<PinnedBuffer>();
  if (bytes > 0) WIDEEP_CUDA_THROW(env, cudaMallocHost(&buf->ptr, bytes));
  return buf;
}

uint8_t* HostBytes(const Napi::TypedArray& a) {
  return static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
}

}  // namespace

Napi::Value CopyHostToDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t dst = ArgPtr(info, 0, "dst");
  Napi::TypedArray src = ArgTypedArray(info, 1, "src");
  auto stream = Stream::From(env, ArgAt(info, 2, "stream"), "stream");
  size_t bytes = src.ByteLength();
  DeviceGuard guard(stream->device);
  auto staging = AllocPinned(env, bytes);
  if (bytes > 0) {
    std::memcpy(staging->ptr, HostBytes(src), bytes);
    WIDEEP_CUDA_THROW(env, cudaMemcpyAsync(reinterpret_cast<void*>(dst), staging->ptr, bytes,
                                           cudaMemcpyHostToDevice, stream->stream));
  }
  auto done = CreateEvent(env, stream->device, false);
  WIDEEP_CUDA_THROW(env, cudaEventRecord(done->event, stream->stream));
  return (new CopyWorker(env, done, std::move(staging), Napi::TypedArray(), 0))->Queue();
}

Napi::Value CopyDeviceToHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::TypedArray dst = ArgTypedArray(info, 0, "dst");
  uint64_t src = ArgPtr(info, 1, "src");
  auto stream = Stream::From(env, ArgAt(info, 2, "stream"), "stream");
  size_t bytes = dst.ByteLength();
  DeviceGuard guard(stream->device);
  auto staging = AllocPinned(env, bytes);
  if (bytes > 0) {
    WIDEEP_CUDA_THROW(env, cudaMemcpyAsync(staging->ptr, reinterpret_cast<const void*>(src), bytes,
                                           cudaMemcpyDeviceToHost, stream->stream));
  }
  auto done = CreateEvent(env, stream->device, false);
  WIDEEP_CUDA_THROW(env, cudaEventRecord(done->event, stream->stream));
  return (new CopyWorker(env, done, std::move(staging), dst, bytes))->Queue();
}

void CopyDeviceToDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t dst = ArgPtr(info, 0, "dst");
  uint64_t src = ArgPtr(info, 1, "src");
  size_t bytes = static_cast<size_t>(ArgInt(info, 2, "bytes", 0, int64_t{1} << 50));
  auto stream = Stream::From(env, ArgAt(info, 3, "stream"), "stream");
  if (bytes == 0) return;
  DeviceGuard guard(stream->device);
  WIDEEP_CUDA_THROW(env, cudaMemcpyAsync(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), bytes,
                                         cudaMemcpyDeviceToDevice, stream->stream));
}

void Memset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t ptr = ArgPtr(info, 0, "ptr");
  int value = static_cast<int>(ArgInt(info, 1, "value", 0, 255));
  size_t bytes = static_cast<size_t>(ArgInt(info, 2, "bytes", 0, int64_t{1} << 50));
  auto stream = Stream::From(env, ArgAt(info, 3, "stream"), "stream");
  if (bytes == 0) return;
  DeviceGuard guard(stream->device);
  WIDEEP_CUDA_THROW(env, cudaMemsetAsync(reinterpret_cast<void*>(ptr), value, bytes, stream->stream));
}

Napi::Value MemGetInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int device = static_cast<int>(ArgInt(info, 0, "device", 0, 1 << 16));
  DeviceGuard guard(device);
  WIDEEP_CUDA_THROW(env, cudaSetDevice(device));
  size_t freeBytes = 0, totalBytes = 0;
  WIDEEP_CUDA_THROW(env, cudaMemGetInfo(&freeBytes, &totalBytes));
  Napi::Object out = Napi::Object::New(env);
  out.Set("free", Napi::Number::New(env, static_cast<double>(freeBytes)));
  out.Set("total", Napi::Number::New(env, static_cast<double>(totalBytes)));
  return out;
}

void SetDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int device = static_cast<int>(ArgInt(info, 0, "device", 0, 1 << 16));
  WIDEEP_CUDA_THROW(env, cudaSetDevice(device));
}

void TrimMemoryPool(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int device = static_cast<int>(ArgInt(info, 0, "device", 0, 1 << 16));
  DeviceGuard guard(device);
  cudaMemPool_t pool;
  WIDEEP_CUDA_THROW(env, cudaDeviceGetDefaultMemPool(&pool, device));
  WIDEEP_CUDA_THROW(env, cudaMemPoolTrimTo(pool, 0));
}

}  // namespace wideep
