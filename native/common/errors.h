// JS errors with a stable `code` (and the raw `status` where one exists); the
// TypeScript side re-labels them as WideepError.
#pragma once

#include <napi.h>

#include <optional>
#include <string>

namespace wideep {

// A failure recorded off the JS thread, turned into a JS error later.
struct Failure {
  std::string code;
  std::string message;
  std::optional<int> status;

  bool ok() const { return code.empty(); }
};

Napi::Error MakeError(Napi::Env env, const Failure& f);

[[noreturn]] void Throw(Napi::Env env, const std::string& code, const std::string& message,
                        std::optional<int> status = std::nullopt);

[[noreturn]] void ThrowInvalidArg(Napi::Env env, const std::string& message);

}  // namespace wideep
