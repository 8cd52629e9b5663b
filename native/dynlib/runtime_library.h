// What the run-time loaders of NCCL and cuBLASLt share: the record of a load
// (every failed candidate included), its JS form, and a resolver that fills a
// function table and names every symbol it could not find.
#pragma once

#include <napi.h>

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

}  // namespace wideep
