// cuBLAS statuses as the library's stable `CUBLAS_STATUS_*` codes.
#pragma once

#include <napi.h>

#include <string>

#include "blas/cublaslt_api.h"

namespace wideep::blas {

std::string StatusCode(Status s);

// Throws a JS error when `s` is not success, naming the call `what`.
void Check(Napi::Env env, Status s, const char* what);

}  // namespace wideep::blas
