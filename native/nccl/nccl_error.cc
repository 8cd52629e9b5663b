#include "nccl/nccl_error.h"

namespace wideep::nccl {

std::string ErrorCode(Result r) {
  switch (r) {
    case kSuccess: return "NCCL_SUCCESS";
    case kUnhandledCudaError: return "NCCL_UNHANDLED_CUDA_ERROR";
    case kSystemError: return "NCCL_SYSTEM_ERROR";
    case kInternalError: return "NCCL_INTERNAL_ERROR";
    case kInvalidArgument: return "NCCL_INVALID_ARGUMENT";
    case kInvalidUsage: return "NCCL_INVALID_USAGE";
    case kRemoteError: return "NCCL_REMOTE_ERROR";
    case kInProgress: return "NCCL_IN_PROGRESS";
    case kTimeout: return "NCCL_TIMEOUT";
  }
  return "NCCL_ERROR_" + std::to_string(static_cast<int>(r));
}

Failure MakeFailure(const Api* api, Result r, Comm comm, const std::string& what) {
  if (r == kSuccess) return {};
  std::string msg = what + " failed: " + (api ? api->GetErrorString(r) : "NCCL error");
  if (api && comm) {
    const char* last = api->GetLastError(comm);
    if (last && last[0]) msg += " (" + std::string(last) + ")";
  }
  return Failure{ErrorCode(r), msg, static_cast<int>(r)};
}

}  // namespace wideep::nccl
