#include "nccl/communicator.h"

#include <cstring>

#include "addon.h"
#include "common/args.h"
#include "common/promise_worker.h"
#include "cuda/cuda_error.h"
#include "cuda/device_guard.h"
#include "cuda/event.h"
#include "cuda/stream.h"
#include "nccl/nccl_error.h"
#include "nccl/nccl_loader.h"

namespace wideep::nccl {
namespace {

constexpr napi_type_tag kCommTag = {0x7769646565702d63ULL, 0x6f6d6d0000000004ULL};
constexpr int64_t kMaxCount = int64_t{1} << 46;

struct NewComm {
  std::shared_ptr<CommCore> core;
  int rank = 0;
  int size = 0;
};

const Api* RequireApi(Napi::Env env) {
  const Api* api = LoadedApi();
  if (!api) Throw(env, "ERR_NCCL_NOT_FOUND", "NCCL is not loaded: call ncclLoad() first");
  return api;
}

Config MakeConfig(int minCtas, int maxCtas) {
  Config c;
  c.blocking = 0;  // nonblocking: every wait is bounded by our timeout
  if (minCtas > 0) c.minCTAs = minCtas;
  if (maxCtas > 0) c.maxCTAs = maxCtas;
  return c;
}

// Settles with a new Communicator (or undefined for a split with no color).
class NewCommWorker : public PromiseWorker {
 public:
  NewCommWorker(Napi::Env env, const char* name, std::function<Failure(NewComm*)> run)
      : PromiseWorker(env, name), run_(std::move(run)) {}

 protected:
  Failure Run() override { return run_(&result_); }
  Napi::Value Resolve(Napi::Env env) override {
    if (!result_.core) return env.Undefined();
    return Communicator::Wrap(env, std::move(result_.core), result_.rank, result_.size);
  }

 private:
  std::function<Failure(NewComm*)> run_;
  NewComm result_;
};

class WaitWorker : public PromiseWorker {
 public:
  WaitWorker(Napi::Env env, std::shared_ptr<CommCore> core, std::shared_ptr<EventResource> ev)
      : PromiseWorker(env, "wideep:comm.wait"), core_(std::move(core)), ev_(std::move(ev)) {}

 protected:
  Failure Run() override {
    WIDEEP_CUDA_RETURN(cudaSetDevice(ev_->device));
    WIDEEP_CUDA_RETURN(cudaEventSynchronize(ev_->event));
    // An abort (ours, or NCCL's own on a lost peer) lets the kernels finish
    // early: ask NCCL now rather than wait for the watchdog's next look.
    return core_->Poll();
  }

 private:
  std::shared_ptr<CommCore> core_;
  std::shared_ptr<EventResource> ev_;
};

using Deadline = CommCore::Clock::time_point;

Deadline DeadlineIn(int64_t timeoutMs) { return CommCore::Clock::now() + std::chrono::milliseconds(timeoutMs); }

// Waits, until `deadline`, for a communicator produced by a nonblocking init
// or split. A call that returned ncclSuccess may still be running, so the
// communicator is asked at least once.
Failure Settle(const Api* api, Comm comm, Deadline deadline, int64_t timeoutMs, const char* what) {
  Result r = AsyncState(api, comm);
  while (r == kInProgress) {
    if (CommCore::Clock::now() > deadline) {
      return Failure{"ERR_TIMEOUT",
                     std::string(what) + " did not finish within " + std::to_string(timeoutMs) +
                         " ms: some ranks never joined",
                     std::nullopt};
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    r = AsyncState(api, comm);
  }
  return MakeFailure(api, r, comm, what);
}

// Splits `parent` (a nonblocking communicator) into *out and settles both by
// `deadline`. The split runs as a job on the parent: the child handle is
// written when that job ends (null for kSplitNoColor), so *out must outlive
// any abort of the parent, and after a failure the caller aborts the parent
// first and then a child that appeared in *out.
Failure SplitSettled(const Api* api, Comm parent, int color, int key, Config cfg, Deadline deadline, int64_t timeoutMs,
                     Comm* out) {
  const Result r = api->CommSplit(parent, color, key, out, &cfg);
  if (r != kSuccess && r != kInProgress) return MakeFailure(api, r, parent, "ncclCommSplit");
  Failure f = Settle(api, parent, deadline, timeoutMs, "ncclCommSplit");
  if (!f.ok() || !*out) return f;
  return Settle(api, *out, deadline, timeoutMs, "ncclCommSplit");
}

// Completes a settled nonblocking `control` communicator with its blocking
// twin for the operations (see comm_core.h). On failure both are aborted.
Failure MakeCore(const Api* api, Comm control, int device, Deadline deadline, int64_t timeoutMs, int minCtas, int maxCtas,
                 NewComm* out) {
  int rank = 0, size = 0;
  Result r = api->CommUserRank(control, &rank);
  if (r == kSuccess) r = api->CommCount(control, &size);
  Failure f = r == kSuccess ? Failure{} : MakeFailure(api, r, control, "ncclCommUserRank");
  Config cfg = MakeConfig(minCtas, maxCtas);
  cfg.blocking = 1;
  Comm ops = nullptr;
  if (f.ok()) f = SplitSettled(api, control, 0, rank, cfg, deadline, timeoutMs, &ops);
  if (f.ok() && !ops) f = Failure{"NCCL_INTERNAL_ERROR", "ncclCommSplit gave no operations communicator", std::nullopt};
  if (!f.ok()) {
    api->CommAbort(control);
    if (ops) api->CommAbort(ops);
    return f;
  }
  out->core = std::make_shared<CommCore>(api, control, ops, device, timeoutMs);
  out->rank = rank;
  out->size = size;
  return {};
}

DataType ArgDataType(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<DataType>(ArgInt(info, i, "dtype", kInt8, kFloat8e4m3));
}

RedOp ArgRedOp(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<RedOp>(ArgInt(info, i, "op", kSum, kAvg));
}

void* AsPtr(uint64_t p) { return reinterpret_cast<void*>(p); }

}  // namespace

Napi::Function Communicator::Define(Napi::Env env) {
  return DefineClass(env, "Communicator",
                     {
                         StaticMethod<&Communicator::GetUniqueId>("getUniqueId"),
                         StaticMethod<&Communicator::Init>("init"),
                         InstanceMethod<&Communicator::Split>("split"),
                         InstanceMethod<&Communicator::AllReduce>("allReduce"),
                         InstanceMethod<&Communicator::Broadcast>("broadcast"),
                         InstanceMethod<&Communicator::AllGather>("allGather"),
                         InstanceMethod<&Communicator::ReduceScatter>("reduceScatter"),
                         InstanceMethod<&Communicator::SendRecv>("sendRecv"),
                         InstanceMethod<&Communicator::Wait>("wait"),
                         InstanceMethod<&Communicator::GetError>("error"),
                         InstanceMethod<&Communicator::Close>("close"),
                         InstanceAccessor<&Communicator::GetRank>("rank"),
                         InstanceAccessor<&Communicator::GetSize>("size"),
                         InstanceAccessor<&Communicator::GetDevice>("device"),
                         InstanceAccessor<&Communicator::GetClosed>("closed"),
                     });
}

Communicator::Communicator(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Communicator>(info) {
  if (info.Length() < 1 || !info[0].IsExternal()) {
    ThrowInvalidArg(info.Env(), "Communicator cannot be constructed directly; use Communicator.init()");
  }
  NewComm* init = info[0].As<Napi::External<NewComm>>().Data();
  core_ = std::move(init->core);
  rank_ = init->rank;
  size_ = init->size;
  info.This().As<Napi::Object>().TypeTag(&kCommTag);
}

Napi::Object Communicator::Wrap(Napi::Env env, std::shared_ptr<CommCore> core, int rank, int size) {
  NewComm init{std::move(core), rank, size};
  return State(env).communicatorCtor.New({Napi::External<NewComm>::New(env, &init)});
}

Napi::Value Communicator::GetUniqueId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Api* api = RequireApi(env);
  UniqueId id{};
  Result r = api->GetUniqueId(&id);
  if (r != kSuccess) throw MakeError(env, MakeFailure(api, r, nullptr, "ncclGetUniqueId"));
  Napi::Uint8Array out = Napi::Uint8Array::New(env, kUniqueIdBytes);
  std::memcpy(out.Data(), id.internal, kUniqueIdBytes);
  return out;
}

// init(uniqueId, nranks, rank, device, timeoutMs, minCtas, maxCtas) -> Promise<Communicator>
Napi::Value Communicator::Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Api* api = RequireApi(env);
  Napi::TypedArray idArg = ArgTypedArray(info, 0, "uniqueId");
  if (idArg.ByteLength() != kUniqueIdBytes) ThrowInvalidArg(env, "uniqueId must be 128 bytes");
  UniqueId id{};
  std::memcpy(id.internal, static_cast<uint8_t*>(idArg.ArrayBuffer().Data()) + idArg.ByteOffset(), kUniqueIdBytes);
  int nranks = static_cast<int>(ArgInt(info, 1, "nranks", 1, 1 << 20));
  int rank = static_cast<int>(ArgInt(info, 2, "rank", 0, nranks - 1));
  int device = static_cast<int>(ArgInt(info, 3, "device", 0, 1 << 16));
  int64_t timeoutMs = ArgInt(info, 4, "timeoutMs", 1, int64_t{1} << 40);
  int minCtas = static_cast<int>(ArgInt(info, 5, "minCtas", 0, 1024));
  int maxCtas = static_cast<int>(ArgInt(info, 6, "maxCtas", 0, 1024));
  auto run = [=](NewComm* out) -> Failure {
    WIDEEP_CUDA_RETURN(cudaSetDevice(device));
    const Deadline deadline = DeadlineIn(timeoutMs);
    Config cfg = MakeConfig(minCtas, maxCtas);
    Comm comm = nullptr;
    const Result r = api->CommInitRankConfig(&comm, nranks, id, rank, &cfg);
    Failure f = r == kSuccess || r == kInProgress ? Failure{} : MakeFailure(api, r, comm, "ncclCommInitRankConfig");
    if (f.ok()) f = Settle(api, comm, deadline, timeoutMs, "ncclCommInitRankConfig");
    if (!f.ok()) {
      if (comm) api->CommAbort(comm);
      return f;
    }
    return MakeCore(api, comm, device, deadline, timeoutMs, minCtas, maxCtas, out);
  };
  return (new NewCommWorker(env, "wideep:nccl.init", run))->Queue();
}

CommCore& Communicator::Live(Napi::Env env) const {
  if (!core_) Throw(env, "ERR_CLOSED", "communicator is closed");
  return *core_;
}

void Communicator::Check(Napi::Env env, const Failure& f) const {
  if (!f.ok()) throw MakeError(env, f);
}

// split(color, key) -> Promise<Communicator | undefined>
Napi::Value Communicator::Split(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<CommCore> core = core_;
  Live(env);
  int color = static_cast<int>(ArgInt(info, 0, "color", kSplitNoColor, INT32_MAX));
  int key = static_cast<int>(ArgInt(info, 1, "key", INT32_MIN, INT32_MAX));
  auto run = [core, color, key](NewComm* out) -> Failure {
    WIDEEP_CUDA_RETURN(cudaSetDevice(core->device()));
    const Deadline deadline = DeadlineIn(core->timeoutMs());
    Comm child = nullptr;  // written by the split's job, which a failed WithComm has aborted by now
    Failure f = core->WithComm([&](Comm parent) {
      return SplitSettled(core->api(), parent, color, key, MakeConfig(0, 0), deadline, core->timeoutMs(), &child);
    });
    if (!f.ok()) {
      if (child) core->api()->CommAbort(child);
      return f;
    }
    if (!child) return f;
    return MakeCore(core->api(), child, core->device(), deadline, core->timeoutMs(), 0, 0, out);
  };
  return (new NewCommWorker(env, "wideep:nccl.split", run))->Queue();
}

namespace {

// The leading (send, recv, count, dtype) arguments of every buffer collective.
struct BufferArgs {
  void* send;
  void* recv;
  size_t count;
  DataType type;
};

BufferArgs ReadBufferArgs(const Napi::CallbackInfo& info, const char* countName) {
  return BufferArgs{AsPtr(ArgPtr(info, 0, "send")), AsPtr(ArgPtr(info, 1, "recv")),
                    static_cast<size_t>(ArgInt(info, 2, countName, 0, kMaxCount)), ArgDataType(info, 3)};
}

}  // namespace

// allReduce(send, recv, count, dtype, op, stream)
void Communicator::AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CommCore& core = Live(env);
  BufferArgs b = ReadBufferArgs(info, "count");
  RedOp op = ArgRedOp(info, 4);
  auto stream = Stream::From(env, ArgAt(info, 5, "stream"), "stream");
  const Api* api = core.api();
  Check(env, core.Enqueue("allReduce", stream->stream, [&](Comm c) {
    return api->AllReduce(b.send, b.recv, b.count, b.type, op, c, stream->stream);
  }));
}

// broadcast(send, recv, count, dtype, root, stream)
void Communicator::Broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CommCore& core = Live(env);
  BufferArgs b = ReadBufferArgs(info, "count");
  int root = static_cast<int>(ArgInt(info, 4, "root", 0, size_ - 1));
  auto stream = Stream::From(env, ArgAt(info, 5, "stream"), "stream");
  const Api* api = core.api();
  Check(env, core.Enqueue("broadcast", stream->stream, [&](Comm c) {
    return api->Broadcast(b.send, b.recv, b.count, b.type, root, c, stream->stream);
  }));
}

// allGather(send, recv, sendCount, dtype, stream)
void Communicator::AllGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CommCore& core = Live(env);
  BufferArgs b = ReadBufferArgs(info, "sendCount");
  auto stream = Stream::From(env, ArgAt(info, 4, "stream"), "stream");
  const Api* api = core.api();
  Check(env, core.Enqueue("allGather", stream->stream, [&](Comm c) {
    return api->AllGather(b.send, b.recv, b.count, b.type, c, stream->stream);
  }));
}

// reduceScatter(send, recv, recvCount, dtype, op, stream)
void Communicator::ReduceScatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CommCore& core = Live(env);
  BufferArgs b = ReadBufferArgs(info, "recvCount");
  RedOp op = ArgRedOp(info, 4);
  auto stream = Stream::From(env, ArgAt(info, 5, "stream"), "stream");
  const Api* api = core.api();
  Check(env, core.Enqueue("reduceScatter", stream->stream, [&](Comm c) {
    return api->ReduceScatter(b.send, b.recv, b.count, b.type, op, c, stream->stream);
  }));
}

// sendRecv(ops: BigInt64Array of (kind 0=send/1=recv, peer, ptr, count) tuples, dtype, stream):
// one NCCL group, so all-to-all(v) patterns cannot deadlock.
void Communicator::SendRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CommCore& core = Live(env);
  Napi::TypedArray arr = ArgTypedArray(info, 0, "ops");
  if (arr.TypedArrayType() != napi_bigint64_array || arr.ElementLength() % 4 != 0) {
    ThrowInvalidArg(env, "sendRecv(ops): expected a BigInt64Array of (kind, peer, ptr, count) tuples");
  }
  const int64_t* ops = reinterpret_cast<const int64_t*>(static_cast<uint8_t*>(arr.ArrayBuffer().Data()) +
                                                        arr.ByteOffset());
  size_t n = arr.ElementLength() / 4;
  for (size_t i = 0; i < n; ++i) {
    const int64_t* o = ops + 4 * i;
    if ((o[0] != 0 && o[0] != 1) || o[1] < 0 || o[1] >= size_ || o[3] < 0 || o[3] > kMaxCount) {
      ThrowInvalidArg(env, "sendRecv(ops): tuple " + std::to_string(i) + " is invalid");
    }
  }
  DataType type = ArgDataType(info, 1);
  auto stream = Stream::From(env, ArgAt(info, 2, "stream"), "stream");
  const Api* api = core.api();
  Check(env, core.Enqueue("sendRecv", stream->stream, [&](Comm c) -> Result {
    Result r = api->GroupStart();
    if (r != kSuccess) return r;
    for (size_t i = 0; i < n && r == kSuccess; ++i) {
      const int64_t* o = ops + 4 * i;
      size_t count = static_cast<size_t>(o[3]);
      int peer = static_cast<int>(o[1]);
      void* ptr = AsPtr(static_cast<uint64_t>(o[2]));
      r = o[0] == 0 ? api->Send(ptr, count, type, peer, c, stream->stream)
                    : api->Recv(ptr, count, type, peer, c, stream->stream);
    }
    Result end = api->GroupEnd();
    return r != kSuccess ? r : end;
  }));
}

// wait(stream) -> Promise: resolves when everything queued on `stream` so far has
// completed, and rejects with the communicator's error if it was aborted.
Napi::Value Communicator::Wait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Live(env);
  auto stream = Stream::From(env, ArgAt(info, 0, "stream"), "stream");
  auto ev = CreateEvent(env, stream->device, false);
  DeviceGuard guard(stream->device);
  WIDEEP_CUDA_THROW(env, cudaEventRecord(ev->event, stream->stream));
  return (new WaitWorker(env, core_, ev))->Queue();
}

// error() -> {code, message} | null
Napi::Value Communicator::GetError(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!core_) return env.Null();
  Failure f = core_->Status();
  if (f.ok()) return env.Null();
  return MakeError(env, f).Value();
}

// close(): aborts in-flight work and frees the communicator. Idempotent.
// A pending wait() or split may still hold the core: it is aborted now, and
// freed when the last of them lets go.
void Communicator::Close(const Napi::CallbackInfo&) {
  if (core_) core_->Abort(Failure{"ERR_CLOSED", "communicator is closed", std::nullopt});
  core_.reset();
}

Napi::Value Communicator::GetRank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), rank_); }
Napi::Value Communicator::GetSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), size_); }
Napi::Value Communicator::GetDevice(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), core_ ? core_->device() : -1);
}
Napi::Value Communicator::GetClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !core_);
}

}  // namespace wideep::nccl
