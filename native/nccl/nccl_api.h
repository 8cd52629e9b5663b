// Our own declarations of the parts of NCCL's public C API that we call,
// resolved at run time from libnccl.so.2 (no NCCL headers or link step).
// Values follow NCCL's documented ABI, which is stable across 2.x.
#pragma once

#include <cuda_runtime_api.h>

#include <climits>
#include <cstddef>

namespace wideep::nccl {

using Comm = struct ncclComm*;

constexpr int kUniqueIdBytes = 128;
struct UniqueId {
  char internal[kUniqueIdBytes];
};

enum Result : int {
  kSuccess = 0,
  kUnhandledCudaError = 1,
  kSystemError = 2,
  kInternalError = 3,
  kInvalidArgument = 4,
  kInvalidUsage = 5,
  kRemoteError = 6,
  kInProgress = 7,
  kTimeout = 8,
};

enum DataType : int {
  kInt8 = 0,
  kUint8 = 1,
  kInt32 = 2,
  kUint32 = 3,
  kInt64 = 4,
  kUint64 = 5,
  kFloat16 = 6,
  kFloat32 = 7,
  kFloat64 = 8,
  kBfloat16 = 9,
  kFloat8e4m3 = 10,
};

enum RedOp : int { kSum = 0, kProd = 1, kMax = 2, kMin = 3, kAvg = 4 };

// The communicator config, in the layout NCCL 2.18 introduced. NCCL reads
// only the fields covered by `size`/`version`, so newer libraries accept it.
constexpr unsigned kConfigMagic = 0xcafebeef;
constexpr unsigned kConfigVersion = 21800;  // NCCL_VERSION(2, 18, 0)
constexpr int kConfigUndefInt = INT_MIN;
struct Config {
  size_t size = sizeof(Config);
  unsigned magic = kConfigMagic;
  unsigned version = kConfigVersion;
  int blocking = kConfigUndefInt;
  int cgaClusterSize = kConfigUndefInt;
  int minCTAs = kConfigUndefInt;
  int maxCTAs = kConfigUndefInt;
  const char* netName = nullptr;
  int splitShare = kConfigUndefInt;
};

constexpr int kSplitNoColor = -1;

// Function pointer table, filled by the loader.
struct Api {
  Result (*GetVersion)(int* version);
  Result (*GetUniqueId)(UniqueId* id);
  Result (*CommInitRankConfig)(Comm* comm, int nranks, UniqueId id, int rank, Config* config);
  Result (*CommSplit)(Comm comm, int color, int key, Comm* newcomm, Config* config);
  Result (*CommFinalize)(Comm comm);
  Result (*CommDestroy)(Comm comm);
  Result (*CommAbort)(Comm comm);
  Result (*CommGetAsyncError)(Comm comm, Result* asyncError);
  Result (*CommCount)(Comm comm, int* count);
  Result (*CommUserRank)(Comm comm, int* rank);
  const char* (*GetErrorString)(Result result);
  const char* (*GetLastError)(Comm comm);
  Result (*AllReduce)(const void* send, void* recv, size_t count, DataType type, RedOp op, Comm comm,
                      cudaStream_t stream);
  Result (*Broadcast)(const void* send, void* recv, size_t count, DataType type, int root, Comm comm,
                      cudaStream_t stream);
  Result (*AllGather)(const void* send, void* recv, size_t sendCount, DataType type, Comm comm, cudaStream_t stream);
  Result (*ReduceScatter)(const void* send, void* recv, size_t recvCount, DataType type, RedOp op, Comm comm,
                          cudaStream_t stream);
  Result (*Send)(const void* send, size_t count, DataType type, int peer, Comm comm, cudaStream_t stream);
  Result (*Recv)(void* recv, size_t count, DataType type, int peer, Comm comm, cudaStream_t stream);
  Result (*GroupStart)();
  Result (*GroupEnd)();
};

}  // namespace wideep::nccl
