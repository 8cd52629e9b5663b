// NCCL statuses as the library's stable `NCCL_*` codes.
#pragma once

#include <string>

#include "common/errors.h"
#include "nccl/nccl_api.h"

namespace wideep::nccl {

std::string ErrorCode(Result r);

// A Failure for `r` from `what`, with NCCL's last error message for `comm` when available.
Failure MakeFailure(const Api* api, Result r, Comm comm, const std::string& what);

}  // namespace wideep::nccl
