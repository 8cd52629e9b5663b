// A shared library opened at run time, with every failed candidate recorded so
// that callers can say exactly what was tried. Reused for NCCL and cuBLAS.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace wideep {

struct LoadAttempt {
  std::string path;
  std::string error;
};

class DynamicLibrary {
 public:
  // dlopen()s the candidates in order and returns the first that loads, after
  // checking that `probeSymbol` resolves in it. Failures go to `attempts`.
  static std::unique_ptr<DynamicLibrary> OpenFirst(const std::vector<std::string>& candidates,
                                                   const char* probeSymbol, std::vector<LoadAttempt>* attempts);

  // Never dlclose()d: libraries holding CUDA state are not safe to unload.
  ~DynamicLibrary() = default;

  // nullptr (with `error` set) when the symbol is missing.
  void* Symbol(const char* name, std::string* error) const;

  // Absolute path of the loaded file, even when it was found by soname.
  const std::string& path() const { return path_; }

 private:
  DynamicLibrary(void* handle, std::string path) : handle_(handle), path_(std::move(path)) {}

  void* handle_;
  std::string path_;
};

}  // namespace wideep
