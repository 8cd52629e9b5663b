// Our own declarations of the parts of cuBLASLt's public C API that we call,
// resolved at run time from libcublasLt.so (no cuBLAS headers or link step).
// Enum values follow cuBLAS's documented ABI; cudaDataType_t comes from the
// CUDA runtime's own library_types.h.
#pragma once

#include <cuda_runtime_api.h>
#include <library_types.h>

#include <cstddef>
#include <cstdint>

namespace wideep::blas {

using LtHandle = struct LtContext*;
using MatmulDesc = struct LtMatmulDescOpaque*;
using MatrixLayout = struct LtMatrixLayoutOpaque*;
using MatmulPreference = struct LtMatmulPreferenceOpaque*;

using Status = int;
constexpr Status kSuccess = 0;
constexpr Status kNotSupported = 15;

// cublasComputeType_t
constexpr int kCompute32F = 68;
// cublasOperation_t
constexpr int kOpN = 0;
constexpr int kOpT = 1;

// cublasLtMatmulDescAttributes_t
enum MatmulDescAttribute : int {
  kDescTransA = 3,
  kDescTransB = 4,
  kDescAScalePointer = 17,
  kDescBScalePointer = 18,
  kDescAScaleMode = 31,
  kDescBScaleMode = 32,
};

// cublasLtMatmulMatrixScale_t
enum MatrixScale : int {
  kScaleScalar32F = 0,
  kScaleVec128_32F = 4,   // one fp32 per 128 elements along K (DeepSeek's activations)
  kScaleBlk128x128_32F = 5,  // one fp32 per 128x128 block (DeepSeek's weights)
};

// cublasLtMatrixLayoutAttribute_t
enum MatrixLayoutAttribute : int {
  kLayoutBatchCount = 5,
  kLayoutStridedBatchOffset = 6,
};

// cublasLtMatmulPreferenceAttributes_t
enum PreferenceAttribute : int {
  kPrefMaxWorkspaceBytes = 1,
  kPrefMinAlignmentA = 5,
  kPrefMinAlignmentB = 6,
  kPrefMinAlignmentC = 7,
  kPrefMinAlignmentD = 8,
};

struct MatmulAlgo {
  uint64_t data[8];
};

struct MatmulHeuristicResult {
  MatmulAlgo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

// The function table, filled by the loader.
struct Api {
  size_t (*GetVersion)();
  Status (*Create)(LtHandle*);
  Status (*Destroy)(LtHandle);
  Status (*MatmulDescCreate)(MatmulDesc*, int computeType, cudaDataType_t scaleType);
  Status (*MatmulDescDestroy)(MatmulDesc);
  Status (*MatmulDescSetAttribute)(MatmulDesc, int attr, const void* buf, size_t size);
  Status (*MatrixLayoutCreate)(MatrixLayout*, cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld);
  Status (*MatrixLayoutDestroy)(MatrixLayout);
  Status (*MatrixLayoutSetAttribute)(MatrixLayout, int attr, const void* buf, size_t size);
  Status (*MatmulPreferenceCreate)(MatmulPreference*);
  Status (*MatmulPreferenceDestroy)(MatmulPreference);
  Status (*MatmulPreferenceSetAttribute)(MatmulPreference, int attr, const void* buf, size_t size);
  Status (*MatmulAlgoGetHeuristic)(LtHandle, MatmulDesc, MatrixLayout a, MatrixLayout b, MatrixLayout c,
                                   MatrixLayout d, MatmulPreference, int requested, MatmulHeuristicResult* results,
                                   int* returned);
  Status (*Matmul)(LtHandle, MatmulDesc, const void* alpha, const void* a, MatrixLayout aDesc, const void* b,
                   MatrixLayout bDesc, const void* beta, const void* c, MatrixLayout cDesc, void* d,
                   MatrixLayout dDesc, const MatmulAlgo* algo, void* workspace, size_t workspaceBytes,
                   cudaStream_t stream);
};

}  // namespace wideep::blas
