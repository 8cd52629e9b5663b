#include "blas/matmul_plan.h"

#include <string>

#include "blas/blas_error.h"

namespace wideep::blas {
namespace {

constexpr uint32_t kMaxAlignment = 256;  // cuBLASLt's default assumption

uint32_t AlignmentOf(int64_t ptr) {
  uint64_t p = static_cast<uint64_t>(ptr);
  if (p == 0) return kMaxAlignment;
  uint32_t a = 1;
  while (a < kMaxAlignment && (p & a) == 0) a <<= 1;
  return a;
}

template <class T>
void SetDesc(Napi::Env env, const Api& api, MatmulDesc d, int attr, const T& v) {
  Check(env, api.MatmulDescSetAttribute(d, attr, &v, sizeof v), "cublasLtMatmulDescSetAttribute");
}

MatrixLayout MakeLayout(Napi::Env env, const Api& api, int64_t type, int64_t rows, int64_t cols, int64_t ld,
                        int64_t batch, int64_t stride) {
  MatrixLayout l = nullptr;
  Check(env, api.MatrixLayoutCreate(&l, static_cast<cudaDataType_t>(type), rows, cols, ld), "cublasLtMatrixLayoutCreate");
  if (batch > 1) {
    int32_t count = static_cast<int32_t>(batch);
    Check(env, api.MatrixLayoutSetAttribute(l, kLayoutBatchCount, &count, sizeof count), "cublasLtMatrixLayoutSetAttribute");
    Check(env, api.MatrixLayoutSetAttribute(l, kLayoutStridedBatchOffset, &stride, sizeof stride),
          "cublasLtMatrixLayoutSetAttribute");
  }
  return l;
}

std::string Describe(const MatmulBaton& b) {
  auto f = [&](MatmulField x) { return std::to_string(b[x]); };
  return "m=" + f(MatmulField::m) + " n=" + f(MatmulField::n) + " k=" + f(MatmulField::k) + " batch=" +
         f(MatmulField::batch) + " types A/B/C/D=" + f(MatmulField::aType) + "/" + f(MatmulField::bType) + "/" +
         f(MatmulField::cType) + "/" + f(MatmulField::dType) + " scale modes A/B=" + f(MatmulField::aScaleMode) + "/" +
         f(MatmulField::bScaleMode);
}

}  // namespace

PlanKey KeyOf(const MatmulBaton& b) {
  using F = MatmulField;
  return {b[F::workspaceBytes], b[F::m], b[F::n], b[F::k], b[F::batch], b[F::lda], b[F::ldb], b[F::ldc], b[F::ldd],
          b[F::strideA], b[F::strideB], b[F::strideC], b[F::strideD], b[F::aType], b[F::bType], b[F::cType],
          b[F::dType], b[F::transA], b[F::transB], b[F::aScaleMode], b[F::bScaleMode],
          AlignmentOf(b[F::a]), AlignmentOf(b[F::b]), AlignmentOf(b[F::c]), AlignmentOf(b[F::d]),
          b[F::aScale] != 0};
}

MatmulPlan::MatmulPlan(Napi::Env env, const Api& api, LtHandle lt, const MatmulBaton& b) : api_(api) {
  try {
    Prepare(env, lt, b);
  } catch (...) {
    Destroy();  // a throwing constructor runs no destructor
    throw;
  }
}

void MatmulPlan::Prepare(Napi::Env env, LtHandle lt, const MatmulBaton& b) {
  using F = MatmulField;
  const Api& api = api_;
  Check(env, api.MatmulDescCreate(&desc_, kCompute32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  int32_t ta = b.Int(F::transA), tb = b.Int(F::transB);
  SetDesc(env, api, desc_, kDescTransA, ta);
  SetDesc(env, api, desc_, kDescTransB, tb);
  scaled_ = b[F::aScale] != 0;
  if (scaled_) {
    int32_t am = b.Int(F::aScaleMode), bm = b.Int(F::bScaleMode);
    SetDesc(env, api, desc_, kDescAScaleMode, am);
    SetDesc(env, api, desc_, kDescBScaleMode, bm);
    // The heuristic needs the attributes present; Launch() sets the real pointers.
    SetDesc(env, api, desc_, kDescAScalePointer, b[F::aScale]);
    SetDesc(env, api, desc_, kDescBScalePointer, b[F::bScale]);
  }
  int64_t m = b[F::m], n = b[F::n], k = b[F::k], batch = b[F::batch];
  a_ = MakeLayout(env, api, b[F::aType], ta == kOpN ? m : k, ta == kOpN ? k : m, b[F::lda], batch, b[F::strideA]);
  b_ = MakeLayout(env, api, b[F::bType], tb == kOpN ? k : n, tb == kOpN ? n : k, b[F::ldb], batch, b[F::strideB]);
  c_ = MakeLayout(env, api, b[F::cType], m, n, b[F::ldc], batch, b[F::strideC]);
  d_ = MakeLayout(env, api, b[F::dType], m, n, b[F::ldd], batch, b[F::strideD]);

  MatmulPreference pref = nullptr;
  Check(env, api.MatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  uint64_t ws = static_cast<uint64_t>(b[F::workspaceBytes]);
  api.MatmulPreferenceSetAttribute(pref, kPrefMaxWorkspaceBytes, &ws, sizeof ws);
  const std::pair<int, int64_t> aligns[] = {{kPrefMinAlignmentA, b[F::a]}, {kPrefMinAlignmentB, b[F::b]},
                                            {kPrefMinAlignmentC, b[F::c]}, {kPrefMinAlignmentD, b[F::d]}};
  for (const auto& [attr, ptr] : aligns) {
    uint32_t a = AlignmentOf(ptr);
    api.MatmulPreferenceSetAttribute(pref, attr, &a, sizeof a);
  }
  MatmulHeuristicResult result{};
  int returned = 0;
  Status s = api.MatmulAlgoGetHeuristic(lt, desc_, a_, b_, c_, d_, pref, 1, &result, &returned);
  api.MatmulPreferenceDestroy(pref);
  if (s != kSuccess || returned == 0) {
    Status code = s != kSuccess ? s : kNotSupported;
    Throw(env, StatusCode(code), "cuBLASLt has no algorithm for this matmul (" + Describe(b) + ")", code);
  }
  algo_ = result.algo;
}

MatmulPlan::~MatmulPlan() { Destroy(); }

void MatmulPlan::Destroy() {
  if (d_) api_.MatrixLayoutDestroy(d_);
  if (c_) api_.MatrixLayoutDestroy(c_);
  if (b_) api_.MatrixLayoutDestroy(b_);
  if (a_) api_.MatrixLayoutDestroy(a_);
  if (desc_) api_.MatmulDescDestroy(desc_);
}

void MatmulPlan::Launch(Napi::Env env, LtHandle lt, const MatmulBaton& b, cudaStream_t stream) const {
  using F = MatmulField;
  if (scaled_) {
    SetDesc(env, api_, desc_, kDescAScalePointer, b[F::aScale]);
    SetDesc(env, api_, desc_, kDescBScalePointer, b[F::bScale]);
  }
  float alpha = b.Float(F::alphaBits), beta = b.Float(F::betaBits);
  Check(env,
        api_.Matmul(lt, desc_, &alpha, b.Ptr<const void>(F::a), a_, b.Ptr<const void>(F::b), b_, &beta,
                    b.Ptr<const void>(F::c), c_, b.Ptr<void>(F::d), d_, &algo_, b.Ptr<void>(F::workspace),
                    static_cast<size_t>(b[F::workspaceBytes]), stream),
        "cublasLtMatmul");
}

}  // namespace wideep::blas
