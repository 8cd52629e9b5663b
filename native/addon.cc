// Module entry. Nothing here is process-global except loaded shared libraries.
#include "addon.h"

#include "build_info.h"

#ifdef WIDEEP_WITH_CUDA
#include "blas/blas_handle.h"
#include "blas/cublaslt_loader.h"
#include "cuda/copies.h"
#include "cuda/device_memory.h"
#include "cuda/event.h"
#include "cuda/gpu_sleep_binding.h"
#include "cuda/graph.h"
#include "cuda/probe.h"
#include "cuda/stream.h"
#include "ep/baseline_binding.h"
#include "ep/ep_buffer.h"
#include "ep/node_leg_binding.h"
#include "moe/moe_binding.h"
#include "nccl/communicator.h"
#include "nccl/nccl_loader.h"
#endif

namespace wideep {

WideepAddon::WideepAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
#ifdef WIDEEP_WITH_CUDA
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("probe", Napi::Function::New(env, Probe, "probe"));
  cuda.Set("Stream", Stream::Define(env));
  cuda.Set("Event", Event::Define(env));
  cuda.Set("DeviceMemory", DeviceMemory::Define(env));
  cuda.Set("copyHostToDevice", Napi::Function::New(env, CopyHostToDevice, "copyHostToDevice"));
  cuda.Set("copyDeviceToHost", Napi::Function::New(env, CopyDeviceToHost, "copyDeviceToHost"));
  cuda.Set("copyDeviceToDevice", Napi::Function::New(env, CopyDeviceToDevice, "copyDeviceToDevice"));
  cuda.Set("memset", Napi::Function::New(env, Memset, "memset"));
  cuda.Set("memGetInfo", Napi::Function::New(env, MemGetInfo, "memGetInfo"));
  cuda.Set("trimMemoryPool", Napi::Function::New(env, TrimMemoryPool, "trimMemoryPool"));
  cuda.Set("setDevice", Napi::Function::New(env, SetDevice, "setDevice"));
  cuda.Set("sleep", Napi::Function::New(env, GpuSleep, "sleep"));
  cuda.Set("ncclLoad", Napi::Function::New(env, nccl::LoadBinding, "ncclLoad"));
  Napi::Function comm = nccl::Communicator::Define(env);
  communicatorCtor = Napi::Persistent(comm);
  cuda.Set("Communicator", comm);
  cuda.Set("EpBuffer", ep::EpBuffer::Define(env));
  cuda.Set("gatherRows", Napi::Function::New(env, ep::GatherRows, "gatherRows"));
  cuda.Set("scatterAddBf16", Napi::Function::New(env, ep::ScatterAddBf16, "scatterAddBf16"));
  ep::RegisterNodeLeg(env, cuda);
  cuda.Set("blasLoad", Napi::Function::New(env, blas::LoadBinding, "blasLoad"));
  cuda.Set("BlasHandle", blas::BlasHandle::Define(env));
  moe::Register(env, cuda);
  Napi::Function graph = Graph::Define(env);
  graphCtor = Napi::Persistent(graph);
  cuda.Set("Graph", graph);
  exports.Set("cuda", cuda);
#endif
}

}  // namespace wideep

using wideep::WideepAddon;
NODE_API_ADDON(WideepAddon)
