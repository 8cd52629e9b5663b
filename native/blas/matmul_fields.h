// The slots of a matmul baton: D = alpha * op(A) * op(B) + beta * C in
// cuBLAS's column-major terms, optionally strided-batched and block-scaled.
#pragma once

#define WIDEEP_MATMUL_FIELDS(X)                                                                   \
  X(a) X(b) X(c) X(d) X(aScale) X(bScale) X(workspace) X(workspaceBytes) X(m) X(n) X(k) X(batch)   \
  X(lda) X(ldb) X(ldc) X(ldd) X(strideA) X(strideB) X(strideC) X(strideD) X(aType) X(bType)       \
  X(cType) X(dType) X(transA) X(transB) X(aScaleMode) X(bScaleMode) X(alphaBits) X(betaBits)

namespace wideep::blas {

#define WIDEEP_ENUM_ENTRY(name) name,
enum class MatmulField { WIDEEP_MATMUL_FIELDS(WIDEEP_ENUM_ENTRY) kCount };
#undef WIDEEP_ENUM_ENTRY

}  // namespace wideep::blas
