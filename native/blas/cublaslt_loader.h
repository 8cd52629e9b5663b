// Finds and loads libcublasLt once per process; every BlasHandle uses the
// resulting function table.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "blas/cublaslt_api.h"
#include "dynlib/runtime_library.h"

namespace wideep::blas {

// Tries `candidates` unless a library is already loaded. Thread-safe.
const LibraryLoad& Load(const std::vector<std::string>& candidates);

// The loaded API, or nullptr before a successful Load().
const Api* LoadedApi();

// blasLoad(candidates: string[]) -> {loaded, path?, version?, attempts}
Napi::Value LoadBinding(const Napi::CallbackInfo& info);

}  // namespace wideep::blas
