#include "ep/ep_buffer.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "common/args.h"
#include "common/promise_worker.h"
#include "cuda/cuda_error.h"
#include "cuda/device_guard.h"
#include "cuda/event.h"
#include "cuda/stream.h"
#include "ep/baton.h"
#include "ep/ep_kernels.h"

namespace wideep::ep {

struct EpResources {
  int device = 0;
  int rank = 0;
  int numRanks = 0;
  int numSlots = 0;
  uint8_t* base = nullptr;
  size_t bytes = 0;
  cudaIpcMemHandle_t handle{};
  PeerBases peers{};
  bool peersOpen = false;
  std::vector<void*> opened;
  EpStatus* hostStatus = nullptr;  // pinned, mapped
  EpStatus* hostStatusDev = nullptr;
  HostCounts* hostCounts = nullptr;  // [numSlots], pinned, mapped
  HostCounts* hostCountsDev = nullptr;
  HostCalls* hostCalls = nullptr;  // pinned, mapped
  HostCalls* hostCallsDev = nullptr;
  bool configured = false;
  int64_t config[static_cast<int>(ConfigField::kCount)] = {};
  NormalRegions normal{};
  LowLatencyRegions ll[2]{};

  ErrorSink Sink() const {
    return ErrorSink{reinterpret_cast<EpStatus*>(base + kLocalStateOffset + offsetof(LocalState, status)),
                     hostStatusDev};
  }
  int Config(ConfigField f) const { return static_cast<int>(config[static_cast<int>(f)]); }
  uint64_t TimeoutNs() const { return static_cast<uint64_t>(config[static_cast<int>(ConfigField::timeoutMs)]) * 1000000ull; }

  // The fields every launch's arguments share.
  template <class Args>
  void FillShared(Args& a) const {
    a.peers = peers;
    a.rank = rank;
    a.numRanks = numRanks;
    a.timeoutNs = TimeoutNs();
    a.status = Sink();
  }

  ~EpResources() {
    DeviceGuard guard(device);
    cudaSetDevice(device);
    for (void* p : opened) cudaIpcCloseMemHandle(p);
    if (base) cudaFree(base);
    if (hostStatus) cudaFreeHost(hostStatus);
    if (hostCounts) cudaFreeHost(hostCounts);
    if (hostCalls) cudaFreeHost(hostCalls);
  }
};

namespace {

constexpr napi_type_tag kEpBufferTag = {0x7769646565702d65ULL, 0x7062756666000005ULL};


class CloseWorker : public PromiseWorker {
 public:
  CloseWorker(Napi::Env env, std::shared_ptr<EpResources> res)
      : PromiseWorker(env, "wideep:ep.close"), res_(std::move(res)) {}

 protected:
  Failure Run() override {
    // Frees after every kernel that may still use the buffer has finished.
    WIDEEP_CUDA_RETURN(cudaSetDevice(res_->device));
    Failure f = CudaFailure(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    res_.reset();
    return f;
  }

 private:
  std::shared_ptr<EpResources> res_;
};

}  // namespace

Napi::Function EpBuffer::Define(Napi::Env env) {
  return DefineClass(env, "EpBuffer",
                     {
                         StaticMethod<&EpBuffer::BatonLayout>("batonLayout"),
                         InstanceMethod<&EpBuffer::GetIpcHandle>("ipcHandle"),
                         InstanceMethod<&EpBuffer::OpenPeers>("openPeers"),
                         InstanceMethod<&EpBuffer::Configure>("configure"),
                         InstanceMethod<&EpBuffer::Notify>("notify"),
                         InstanceMethod<&EpBuffer::Dispatch>("dispatch"),
                         InstanceMethod<&EpBuffer::Combine>("combine"),
                         InstanceMethod<&EpBuffer::LowLatencyDispatch>("lowLatencyDispatch"),
                         InstanceMethod<&EpBuffer::LowLatencyDispatchSend>("lowLatencyDispatchSend"),
                         InstanceMethod<&EpBuffer::LowLatencyDispatchRecv>("lowLatencyDispatchRecv"),
                         InstanceMethod<&EpBuffer::LowLatencyCombine>("lowLatencyCombine"),
                         InstanceMethod<&EpBuffer::LowLatencyCombineSend>("lowLatencyCombineSend"),
                         InstanceMethod<&EpBuffer::LowLatencyCombineRecv>("lowLatencyCombineRecv"),
                         InstanceMethod<&EpBuffer::CleanLowLatency>("cleanLowLatency"),
                         InstanceMethod<&EpBuffer::ReadStatus>("readStatus"),
                         InstanceMethod<&EpBuffer::ReadCounts>("readCounts"),
                         InstanceMethod<&EpBuffer::ReadCallStatus>("readCallStatus"),
                         InstanceMethod<&EpBuffer::Close>("close"),
                         InstanceAccessor<&EpBuffer::GetBase>("base"),
                         InstanceAccessor<&EpBuffer::GetClosed>("closed"),
                     });
}

// batonLayout() -> {config, notify, dispatch, combine, lowLatency, controlBytes, maxRanks, ...}
Napi::Value EpBuffer::BatonLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("config", WIDEEP_FIELD_MAP(env, WIDEEP_CONFIG_FIELDS));
  o.Set("notify", WIDEEP_FIELD_MAP(env, WIDEEP_NOTIFY_FIELDS));
  o.Set("dispatch", WIDEEP_FIELD_MAP(env, WIDEEP_DISPATCH_FIELDS));
  o.Set("combine", WIDEEP_FIELD_MAP(env, WIDEEP_COMBINE_FIELDS));
  o.Set("lowLatency", WIDEEP_FIELD_MAP(env, WIDEEP_LL_FIELDS));
  o.Set("controlBytes", kControlBytes);
  o.Set("maxRanks", kMaxRanks);
  o.Set("maxLocalExperts", kMaxLocalExperts);
  o.Set("maxTopk", kMaxTopk);
  o.Set("routingMetaBytes", static_cast<double>(sizeof(RoutingMeta)));
  return o;
}

// new EpBuffer(device, bytes, numSlots, rank, numRanks)
EpBuffer::EpBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EpBuffer>(info) {
  Napi::Env env = info.Env();
  auto res = std::make_shared<EpResources>();
  res->device = static_cast<int>(ArgInt(info, 0, "device", 0, 1 << 16));
  res->bytes = static_cast<size_t>(ArgInt(info, 1, "bytes", kControlBytes, int64_t{1} << 42));
  res->numSlots = static_cast<int>(ArgInt(info, 2, "numSlots", 1, kMaxSlots));
  res->numRanks = static_cast<int>(ArgInt(info, 4, "numRanks", 1, kMaxRanks));
  res->rank = static_cast<int>(ArgInt(info, 3, "rank", 0, res->numRanks - 1));
  DeviceGuard guard(res->device);
  WIDEEP_CUDA_THROW(env, cudaSetDevice(res->device));
  // cudaMalloc (not the stream-ordered pool): CUDA IPC exports only such allocations.
  cudaError_t st = cudaMalloc(reinterpret_cast<void**>(&res->base), res->bytes);
  if (st != cudaSuccess) {
    cudaGetLastError();
    res->base = nullptr;
    throw MakeError(env, CudaFailure(st, "cudaMalloc(" + std::to_string(res->bytes) + " bytes) for the EP buffer"));
  }
  WIDEEP_CUDA_THROW(env, cudaMemset(res->base, 0, res->bytes));
  WIDEEP_CUDA_THROW(env, cudaIpcGetMemHandle(&res->handle, res->base));
  WIDEEP_CUDA_THROW(env, cudaHostAlloc(reinterpret_cast<void**>(&res->hostStatus), sizeof(EpStatus), cudaHostAllocMapped));
  std::memset(res->hostStatus, 0, sizeof(EpStatus));
  WIDEEP_CUDA_THROW(env, cudaHostGetDevicePointer(reinterpret_cast<void**>(&res->hostStatusDev), res->hostStatus, 0));
  WIDEEP_CUDA_THROW(env, cudaHostAlloc(reinterpret_cast<void**>(&res->hostCounts),
                                       sizeof(HostCounts) * res->numSlots, cudaHostAllocMapped));
  std::memset(res->hostCounts, 0, sizeof(HostCounts) * res->numSlots);
  WIDEEP_CUDA_THROW(env, cudaHostGetDevicePointer(reinterpret_cast<void**>(&res->hostCountsDev), res->hostCounts, 0));
  WIDEEP_CUDA_THROW(env, cudaHostAlloc(reinterpret_cast<void**>(&res->hostCalls), sizeof(HostCalls), cudaHostAllocMapped));
  std::memset(res->hostCalls, 0, sizeof(HostCalls));
  WIDEEP_CUDA_THROW(env, cudaHostGetDevicePointer(reinterpret_cast<void**>(&res->hostCallsDev), res->hostCalls, 0));
  res->peers.ptr[res->rank] = res->base;
  res_ = std::move(res);
  info.This().As<Napi::Object>().TypeTag(&kEpBufferTag);
}

EpBuffer::~EpBuffer() = default;

EpResources& EpBuffer::Live(Napi::Env env) const {
  if (!res_) Throw(env, "ERR_CLOSED", "EP buffer is closed");
  return *res_;
}

EpResources& EpBuffer::Ready(Napi::Env env) const {
  EpResources& r = Live(env);
  if (!r.peersOpen || !r.configured) Throw(env, "ERR_INVALID_ARG", "EP buffer is not connected to its peers yet");
  if (r.hostStatus->code != 0) {
    Throw(env, "ERR_PEER", "EP buffer is unusable after an earlier failure (see readStatus())");
  }
  return r;
}

Napi::Value EpBuffer::GetIpcHandle(const Napi::CallbackInfo& info) {
  EpResources& r = Live(info.Env());
  Napi::Uint8Array out = Napi::Uint8Array::New(info.Env(), sizeof(cudaIpcMemHandle_t));
  std::memcpy(out.Data(), &r.handle, sizeof(cudaIpcMemHandle_t));
  return out;
}

// openPeers(handles: Uint8Array[]): maps every other rank's buffer.
void EpBuffer::OpenPeers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EpResources& r = Live(env);
  if (r.peersOpen) ThrowInvalidArg(env, "openPeers: already open");
  Napi::Value v = ArgAt(info, 0, "handles");
  if (!v.IsArray() || v.As<Napi::Array>().Length() != static_cast<uint32_t>(r.numRanks)) {
    ThrowInvalidArg(env, "openPeers: expected one IPC handle per rank");
  }
  Napi::Array arr = v.As<Napi::Array>();
  DeviceGuard guard(r.device);
  WIDEEP_CUDA_THROW(env, cudaSetDevice(r.device));
  for (int p = 0; p < r.numRanks; ++p) {
    if (p == r.rank) continue;
    Napi::Value h = arr.Get(p);
    if (!h.IsTypedArray() || h.As<Napi::TypedArray>().ByteLength() != sizeof(cudaIpcMemHandle_t)) {
      ThrowInvalidArg(env, "openPeers: handle " + std::to_string(p) + " is not a CUDA IPC handle");
    }
    cudaIpcMemHandle_t handle;
    Napi::TypedArray t = h.As<Napi::TypedArray>();
    std::memcpy(&handle, static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset(), sizeof(handle));
    void* ptr = nullptr;
    WIDEEP_CUDA_THROW(env, cudaIpcOpenMemHandle(&ptr, handle, cudaIpcMemLazyEnablePeerAccess));
    r.opened.push_back(ptr);
    r.peers.ptr[p] = static_cast<uint8_t*>(ptr);
  }
  r.peersOpen = true;
}

// configure(baton): region offsets and limits (src/ep/cuda/buffer-layout.ts).
void EpBuffer::Configure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EpResources& r = Live(env);
  auto b = ReadBatonArg<ConfigField>(info, 0);
  for (int i = 0; i < static_cast<int>(ConfigField::kCount); ++i) r.config[i] = b[static_cast<ConfigField>(i)];
  using F = ConfigField;
  r.normal = NormalRegions{static_cast<uint64_t>(b[F::slab0]),       static_cast<uint64_t>(b[F::slabStride]),
                           static_cast<uint64_t>(b[F::slabX]),       static_cast<uint64_t>(b[F::slabScales]),
                           static_cast<uint64_t>(b[F::slabTopkIdx]), static_cast<uint64_t>(b[F::slabTopkWeights]),
                           static_cast<uint64_t>(b[F::slabSrcIdx]),  static_cast<uint64_t>(b[F::combineX]),
                           static_cast<uint64_t>(b[F::combineWeights]), static_cast<uint64_t>(b[F::combineFlags])};
  for (int h = 0; h < 2; ++h) {
    const uint64_t o = static_cast<uint64_t>(b[F::llHalf0] + h * b[F::llHalfStride]);
    r.ll[h] = LowLatencyRegions{o + b[F::llStaging],    static_cast<uint64_t>(b[F::llStagingStride]),
                                o + b[F::llSrcTopk],    o + b[F::llSrcRank],
                                o + b[F::llSrcCount],   o + b[F::llRecvX],
                                o + b[F::llRecvScales], o + b[F::llSrcInfo],
                                o + b[F::llLayoutRange], o + b[F::llRecvCount],
                                o + b[F::llCombineIn],  o + b[F::llSlotOf],
                                o + b[F::llCombineRecv]};
  }
  if (b.Int(F::numLocalExperts) > kMaxLocalExperts || b.Int(F::maxTopk) > kMaxTopk) {
    ThrowInvalidArg(env, "configure: limits exceed the compiled maxima");
  }
  r.configured = true;
}

void EpBuffer::Notify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EpResources& r = Ready(env);
  auto b = ReadBatonArg<NotifyField>(info, 0);
  auto stream = Stream::From(env, ArgAt(info, 1, "stream"), "stream");
  using F = NotifyField;
  NotifyArgs a{};
  r.FillShared(a);
  a.numTokens = b.Int(F::numTokens);
  a.topk = b.Int(F::topk);
  a.numExperts = r.Config(ConfigField::numExperts);
  a.expertAlignment = b.Int(F::expertAlignment);
  a.numWorstTokens = b.Int(F::numWorstTokens);
  a.cached = b.Int(F::cached);
  a.layoutOnly = b.Int(F::layoutOnly);
  a.signature = b.Int(F::signature);
  a.topkIdx = b.Ptr<const void>(F::topkIdx);
  a.idx64 = b.Int(F::idx64);
  a.sendPos = b.Ptr<int32_t>(F::sendPos);
  a.numTokensPerRank = b.Ptr<int32_t>(F::numTokensPerRank);
  a.numTokensPerExpert = b.Ptr<int32_t>(F::numTokensPerExpert);
  a.isTokenInRank = b.Ptr<uint8_t>(F::isTokenInRank);
  a.meta = b.Ptr<RoutingMeta>(F::meta);
  a.call = b.Int(F::call);
  a.localError = b.Int(F::localError);
  const int countsSlot = b.Int(F::countsSlot);
  if (countsSlot >= r.numSlots) ThrowInvalidArg(env, "notify: countsSlot out of range");
  a.host = countsSlot < 0 ? nullptr : r.hostCountsDev + countsSlot;
  a.slot = b.Int(F::slot);
  if (a.slot < -1 || a.slot >= r.numSlots) ThrowInvalidArg(env, "notify: slot out of range");
  a.outcome = a.slot < 0 ? nullptr : &r.hostCallsDev->dispatch[a.slot];
  a.scratch = reinterpret_cast<NotifyScratch*>(r.base + r.config[static_cast<int>(ConfigField::notifyScratch)]);
  if (a.expertAlignment < 1 || a.topk > kMaxTopk) ThrowInvalidArg(env, "notify: bad alignment or topk");
  DeviceGuard guard(r.device);
  WIDEEP_CUDA_THROW(env, LaunchNotify(a, stream->stream));
}

void EpBuffer::Dispatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EpResources& r = Ready(env);
  auto b = ReadBatonArg<DispatchField>(info, 0);
  auto stream = Stream::From(env, ArgAt(info, 1, "stream"), "stream");
  using F = DispatchField;
  DispatchArgs a{};
  r.FillShared(a);
  a.regions = r.normal;
  a.slot = b.Int(F::slot);
  a.numTokens = b.Int(F::numTokens);
  a.hidden = b.Int(F::hidden);
  a.elemBytes = b.Int(F::elemBytes);
  a.hasScales = b.Int(F::hasScales);
  a.topk = b.Int(F::topk);
  a.idx64 = b.Int(F::idx64);
  a.numLocalExperts = r.Config(ConfigField::numLocalExperts);
  a.numWorstTokens = b.Int(F::numWorstTokens);
  a.x = b.Ptr<const uint8_t>(F::x);
  a.xScales = b.Ptr<const float>(F::xScales);
  a.topkIdx = b.Ptr<const void>(F::topkIdx);
  a.topkWeights = b.Ptr<const float>(F::topkWeights);
  a.sendPos = b.Ptr<const int32_t>(F::sendPos);
  a.meta = b.Ptr<const RoutingMeta>(F::meta);
  if (a.slot < 0 || a.slot >= r.numSlots) ThrowInvalidArg(env, "dispatch: slot out of range");
  DeviceGuard guard(r.device);
  WIDEEP_CUDA_THROW(env, LaunchDispatch(a, b.Int(F::numSms), stream->stream));
}

void EpBuffer::Combine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EpResources& r = Ready(env);
  auto b = ReadBatonArg<CombineField>(info, 0);
  auto stream = Stream::From(env, ArgAt(info, 1, "stream"), "stream");
  using F = CombineField;
  CombineArgs a{};
  r.FillShared(a);
  a.regions = r.normal;
  a.slot = b.Int(F::slot);
  a.numTokens = b.Int(F::numTokens);
  a.maxTokens = r.Config(ConfigField::maxTokens);
  a.numRows = b.Int(F::numRows);
  a.hidden = b.Int(F::hidden);
  a.topk = b.Int(F::topk);
  a.x = b.Ptr<const uint16_t>(F::x);
  a.topkWeights = b.Ptr<const float>(F::topkWeights);
  a.bias0 = b.Ptr<const uint16_t>(F::bias0);
  a.bias1 = b.Ptr<const uint16_t>(F::bias1);
  a.out = b.Ptr<uint16_t>(F::out);
  a.outWeights = b.Ptr<float>(F::outWeights);
  a.sendPos = b.Ptr<const int32_t>(F::sendPos);
  a.meta = b.Ptr<const RoutingMeta>(F::meta);
  a.call = b.Int(F::call);
  a.localError = b.Int(F::localError);
  // A refused call only takes part, for the dispatch in `slot` if it names one.
  if (a.slot < (a.localError ? -1 : 0) || a.slot >= r.numSlots) ThrowInvalidArg(env, "combine: slot out of range");
  a.outcome = a.localError ? nullptr : &r.hostCallsDev->combine[a.slot];
  DeviceGuard guard(r.device);
  WIDEEP_CUDA_THROW(env, LaunchCombine(a, b.Int(F::numSms), b.Int(F::numSendSms), stream->stream));
}

namespace {

// `records`: the HostCalls records of this kind of call, one per half.
LowLatencyArgs MakeLowLatencyArgs(const EpResources& r, const Baton<LowLatencyField>& b, EpStatus* records) {
  using F = LowLatencyField;
  LowLatencyArgs a{};
  r.FillShared(a);
  a.half = b.Int(F::half) & 1;
  a.regions = r.ll[a.half];
  a.numTokens = b.Int(F::numTokens);
  a.maxTokens = r.Config(ConfigField::llMaxTokens);
  a.hidden = b.Int(F::hidden);
  a.topk = b.Int(F::topk);
  a.maxTopk = r.Config(ConfigField::maxTopk);
  a.numExperts = r.Config(ConfigField::numExperts);
  a.numLocalExperts = r.Config(ConfigField::numLocalExperts);
  a.useFp8 = b.Int(F::useFp8);
  a.roundScale = b.Int(F::roundScale);
  a.idx64 = b.Int(F::idx64);
  a.x = b.Ptr<const uint16_t>(F::x);
  a.topkIdx = b.Ptr<const void>(F::topkIdx);
  a.topkWeights = b.Ptr<const float>(F::topkWeights);
  a.y = b.Ptr<const uint16_t>(F::y);
  a.out = b.Ptr<uint16_t>(F::out);
  a.cumulativeStats = b.Ptr<int32_t>(F::cumulativeStats);
  a.call = b.Int(F::call);
  a.localError = b.Int(F::localError);
  a.outcome = a.localError ? nullptr : records + a.half;  // a refused call only takes part
  return a;
}

// The optional event argument info[at], checked before anything is launched.
std::shared_ptr<EventResource> OptionalEvent(Napi::Env env, const Napi::CallbackInfo& info, size_t at, int device) {
  if (info.Length() <= at || info[at].IsUndefined()) return nullptr;
  auto event = Event::From(env, info[at], "event");
  if (event->device != device) ThrowInvalidArg(env, "event: expected an event on cuda:" + std::to_string(device));
  return event;
}

// Records `event` (if any) on `stream` after a launch, unless the stream is
// being captured (a captured event would have to outlive the graph). Returns
// whether it did. Done here rather than by separate calls from JavaScript:
// each call across N-API costs more than the CUDA work.
Napi::Value RecordAfterLaunch(Napi::Env env, const EventResource* event, cudaStream_t stream) {
  if (!event) return Napi::Boolean::New(env, false);
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  WIDEEP_CUDA_THROW(env, cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) return Napi::Boolean::New(env, false);
  WIDEEP_CUDA_THROW(env, cudaEventRecord(event->event, stream));
  return Napi::Boolean::New(env, true);
}

}  // namespace

// method(baton, stream, event?): one launch, then the event recorded behind it
// (returns whether it was: not while the stream is captured). A baton with a
// localError launches the rank's part in a call its host refused (the fused
// methods only).
#define WIDEEP_LL_LAUNCH(Method, Records, Call)                                     \
  Napi::Value EpBuffer::Method(const Napi::CallbackInfo& info) {                   \
    Napi::Env env = info.Env();                                                    \
    EpResources& r = Ready(env);                                                   \
    auto b = ReadBatonArg<LowLatencyField>(info, 0);                                  \
    auto stream = Stream::From(env, ArgAt(info, 1, "stream"), "stream");           \
    auto event = OptionalEvent(env, info, 2, r.device);                            \
    LowLatencyArgs a = MakeLowLatencyArgs(r, b, r.hostCallsDev->Records);          \
    const int numSms = b.Int(LowLatencyField::numSms);                             \
    DeviceGuard guard(r.device);                                                   \
    WIDEEP_CUDA_THROW(env, Call);                                                  \
    return RecordAfterLaunch(env, event.get(), stream->stream);                    \
  }

WIDEEP_LL_LAUNCH(LowLatencyDispatch, llDispatch, LaunchLowLatencyDispatch(a, numSms, stream->stream))
WIDEEP_LL_LAUNCH(LowLatencyDispatchSend, llDispatch, LaunchLowLatencyDispatchSend(a, numSms, stream->stream))
WIDEEP_LL_LAUNCH(LowLatencyDispatchRecv, llDispatch, LaunchLowLatencyDispatchRecv(a, numSms, stream->stream))
WIDEEP_LL_LAUNCH(LowLatencyCombine, llCombine, LaunchLowLatencyCombine(a, numSms, stream->stream))
WIDEEP_LL_LAUNCH(LowLatencyCombineSend, llCombine, LaunchLowLatencyCombineSend(a, numSms, stream->stream))
WIDEEP_LL_LAUNCH(LowLatencyCombineRecv, llCombine, LaunchLowLatencyCombineRecv(a, numSms, stream->stream))
#undef WIDEEP_LL_LAUNCH

// cleanLowLatency(stream): zeroes the low-latency flags and sequence numbers.
// Collective: every rank calls it while no low-latency operation is in flight.
void EpBuffer::CleanLowLatency(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EpResources& r = Ready(env);
  auto stream = Stream::From(env, ArgAt(info, 0, "stream"), "stream");
  DeviceGuard guard(r.device);
  WIDEEP_CUDA_THROW(env, cudaMemsetAsync(r.base + kLowLatencyControlOffset, 0, 2 * sizeof(LowLatencyControl),
                                         stream->stream));
  WIDEEP_CUDA_THROW(env, cudaMemsetAsync(r.base + kLocalStateOffset + offsetof(LocalState, llDispatchSeq), 0,
                                         sizeof(uint32_t) * 4, stream->stream));
  WIDEEP_CUDA_THROW(env, cudaMemsetAsync(r.base + kLocalStateOffset + offsetof(LocalState, finished) + kArriveLlDispatch * sizeof(uint32_t),
                                         0, sizeof(uint32_t) * 4, stream->stream));
  static_assert(offsetof(LocalState, llCombineAbort) == offsetof(LocalState, llDispatchAbort) + 2 * sizeof(EpStatus),
                "the low-latency verdicts are cleared together");
  WIDEEP_CUDA_THROW(env, cudaMemsetAsync(r.base + kLocalStateOffset + offsetof(LocalState, llDispatchAbort), 0,
                                         4 * sizeof(EpStatus), stream->stream));
}

namespace {

// A status record as {code, phase, peer, value}, or null when its code is 0.
Napi::Value StatusValue(Napi::Env env, const volatile EpStatus* s) {
  if (s->code == 0) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("code", s->code);
  o.Set("phase", s->phase);
  o.Set("peer", s->peer);
  o.Set("value", s->value);
  return o;
}

}  // namespace

// readStatus() -> {code, phase, peer, value} | null
Napi::Value EpBuffer::ReadStatus(const Napi::CallbackInfo& info) {
  return StatusValue(info.Env(), Live(info.Env()).hostStatus);
}

// readCallStatus(kind, index) -> {code, phase, peer, value} | null: the verdict
// of the last call of `kind` (0 dispatch, 1 combine: per slot; 2 low-latency
// dispatch, 3 low-latency combine: per half), valid once its event completed.
Napi::Value EpBuffer::ReadCallStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EpResources& r = Live(env);
  const int kind = static_cast<int>(ArgInt(info, 0, "kind", 0, 3));
  const int index = static_cast<int>(ArgInt(info, 1, "index", 0, kind < 2 ? r.numSlots - 1 : 1));
  const HostCalls* c = r.hostCalls;
  const EpStatus* records[] = {c->dispatch, c->combine, c->llDispatch, c->llCombine};
  return StatusValue(env, records[kind] + index);
}

// readCounts(slot, numLocalExperts) -> {numRecv, perExpert: Int32Array}; valid once the notify completed.
Napi::Value EpBuffer::ReadCounts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EpResources& r = Live(env);
  int slot = static_cast<int>(ArgInt(info, 0, "slot", 0, r.numSlots - 1));
  int n = static_cast<int>(ArgInt(info, 1, "numLocalExperts", 0, kMaxLocalExperts));
  volatile HostCounts* c = r.hostCounts + slot;
  Napi::Object o = Napi::Object::New(env);
  o.Set("numRecv", c->numRecv);
  Napi::Int32Array per = Napi::Int32Array::New(env, n);
  for (int i = 0; i < n; ++i) per[i] = c->perExpert[i];
  o.Set("perExpert", per);
  return o;
}

// close() -> Promise: waits for the device, then frees (idempotent).
Napi::Value EpBuffer::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!res_) {
    auto d = Napi::Promise::Deferred::New(env);
    d.Resolve(env.Undefined());
    return d.Promise();
  }
  std::shared_ptr<EpResources> res = std::move(res_);
  return (new CloseWorker(env, std::move(res)))->Queue();
}

Napi::Value EpBuffer::GetBase(const Napi::CallbackInfo& info) {
  return PtrToJs(info.Env(), res_ ? res_->base : nullptr);
}

Napi::Value EpBuffer::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !res_); }

}  // namespace wideep::ep
