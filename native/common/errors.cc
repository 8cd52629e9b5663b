#include "common/errors.h"

namespace wideep {

Napi::Error MakeError(Napi::Env env, const Failure& f) {
  Napi::Error err = Napi::Error::New(env, f.message);
  err.Set("code", Napi::String::New(env, f.code));
  if (f.status) err.Set("status", Napi::Number::New(env, *f.status));
  return err;
}

void Throw(Napi::Env env, const std::string& code, const std::string& message, std::optional<int> status) {
  throw MakeError(env, Failure{code, message, status});
}

void ThrowInvalidArg(Napi::Env env, const std::string& message) { Throw(env, "ERR_INVALID_ARG", message); }

}  // namespace wideep
