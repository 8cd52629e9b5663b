// Finds and loads libnccl.so.2 once per process; every communicator uses the
// resulting function table.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "dynlib/runtime_library.h"
#include "nccl/nccl_api.h"

namespace wideep::nccl {

using LoadState = LibraryLoad;

// Tries `candidates` unless a library is already loaded. Thread-safe.
const LoadState& Load(const std::vector<std::string>& candidates);

// The loaded API, or nullptr before a successful Load().
const Api* LoadedApi();

// ncclLoad(candidates: string[]) -> {loaded, path?, version?, attempts}
Napi::Value LoadBinding(const Napi::CallbackInfo& info);

}  // namespace wideep::nccl
