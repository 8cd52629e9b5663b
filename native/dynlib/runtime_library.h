// What the run-time loaders of NCCL and cuBLASLt share: the record of a load
// (every failed candidate included), its JS form, and a resolver that fills a
// function table and names every symbol it could not find.
#pragma once

#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "dynlib/dynamic_library.h"

namespace wideep {

struct LibraryLoad {
  bool loaded = false;
  std::string path;
  int version = 0;
  std::vector<LoadAttempt> attempts;
};

// {loaded, path?, version?, attempts: [{path, error}]}
Napi::Object LibraryLoadToJs(Napi::Env env, const LibraryLoad& load);

// The string array at argument `i` (the candidate paths JS computed).
std::vector<std::string> ArgStringList(const Napi::CallbackInfo& info, size_t i, const char* what);

class SymbolResolver {
 public:
  explicit SymbolResolver(const DynamicLibrary& lib) : lib_(lib) {}

  template <class Fn>
  void operator()(const char* name, Fn* slot) {
    *slot = reinterpret_cast<Fn>(lib_.Symbol(name, nullptr));
    if (*slot) return;
    if (!missing_.empty()) missing_ += ", ";
    missing_ += name;
  }

  bool ok() const { return missing_.empty(); }
  const std::string& missing() const { return missing_; }

 private:
  const DynamicLibrary& lib_;
  std::string missing_;
};

// Tries `candidates` in order and keeps the first that loads, resolves every
// symbol (`resolve(lib, &api, &missing)`) and passes `check(api, &version)`,
// which returns why it refuses the library, or "" to accept it. Every failure
// goes to state->attempts; on success state and *api describe the library.
template <class Api, class Resolve, class Check>
std::unique_ptr<DynamicLibrary> LoadFirstUsable(const std::vector<std::string>& candidates, const char* probeSymbol,
                                                const char* apiName, Resolve resolve, Check check, LibraryLoad* state,
                                                Api* api) {
  state->attempts.clear();
  for (const std::string& candidate : candidates) {
    auto lib = DynamicLibrary::OpenFirst({candidate}, probeSymbol, &state->attempts);
    if (!lib) continue;
    std::string missing;
    Api resolved{};
    if (!resolve(*lib, &resolved, &missing)) {
      state->attempts.push_back({lib->path(), std::string("too old: the ") + apiName + " API lacks " + missing});
      continue;
    }
    std::string refusal = check(resolved, &state->version);
    if (!refusal.empty()) {
      state->attempts.push_back({lib->path(), refusal});
      continue;
    }
    *api = resolved;
    state->loaded = true;
    state->path = lib->path();
    return lib;
  }
  return nullptr;
}

}  // namespace wideep
