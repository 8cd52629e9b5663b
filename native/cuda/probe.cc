#include "cuda/probe.h"

#include <cuda_runtime_api.h>

#include "cuda/cuda_error.h"

namespace wideep {

Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  out.Set("driverVersion", driver);
  out.Set("runtimeVersion", runtime);

  int count = 0;
  cudaError_t st = cudaGetDeviceCount(&count);
  Napi::Array devices = Napi::Array::New(env);
  Napi::Array peers = Napi::Array::New(env);
  if (st != cudaSuccess) {
    cudaGetLastError();
    Napi::Object err = Napi::Object::New(env);
    err.Set("code", CudaErrorCode(st));
    err.Set("message", std::string(cudaGetErrorString(st)));
    err.Set("status", static_cast<int>(st));
    out.Set("error", err);
    count = 0;
  }
  out.Set("deviceCount", count);
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp p{};
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("index", d);
    if (cudaGetDeviceProperties(&p, d) == cudaSuccess) {
      char bus[32] = {0};
      cudaDeviceGetPCIBusId(bus, sizeof(bus), d);
      dev.Set("name", std::string(p.name));
      dev.Set("major", p.major);
      dev.Set("minor", p.minor);
      dev.Set("totalMemory", static_cast<double>(p.totalGlobalMem));
      dev.Set("multiProcessorCount", p.multiProcessorCount);
      dev.Set("pciBusId", std::string(bus));
      dev.Set("l2CacheBytes", p.l2CacheSize);
      dev.Set("sharedMemoryPerBlockOptin", static_cast<double>(p.sharedMemPerBlockOptin));
    } else {
      cudaGetLastError();
      dev.Set("name", "unknown");
    }
    devices.Set(static_cast<uint32_t>(d), dev);
    Napi::Array row = Napi::Array::New(env);
    for (int q = 0; q < count; ++q) {
      int can = q == d ? 1 : 0;
      if (q != d && cudaDeviceCanAccessPeer(&can, d, q) != cudaSuccess) {
        cudaGetLastError();
        can = 0;
      }
      row.Set(static_cast<uint32_t>(q), Napi::Boolean::New(env, can != 0));
    }
    peers.Set(static_cast<uint32_t>(d), row);
  }
  out.Set("devices", devices);
  out.Set("peerAccess", peers);
  return out;
}

}  // namespace wideep
