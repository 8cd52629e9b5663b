// Argument readers for native entry points. TypeScript validates first; these
// are the safety net, so a bad call from JS throws instead of crashing.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

#include "common/errors.h"

namespace wideep {

inline Napi::Value ArgAt(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || info[i].IsUndefined()) ThrowInvalidArg(info.Env(), std::string("missing argument '") + name + "'");
  return info[i];
}

inline int64_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min, int64_t max) {
  Napi::Value v = ArgAt(info, i, name);
  int64_t out = 0;
  if (v.IsBigInt()) {
    bool lossless = false;
    out = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) ThrowInvalidArg(info.Env(), std::string("argument '") + name + "' does not fit in 64 bits");
  } else if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d))) {
      ThrowInvalidArg(info.Env(), std::string("argument '") + name + "' must be an integer");
    }
    out = static_cast<int64_t>(d);
  } else {
    ThrowInvalidArg(info.Env(), std::string("argument '") + name + "' must be a number or bigint");
  }
  if (out < min || out > max) {
    ThrowInvalidArg(info.Env(), std::string("argument '") + name + "' = " + std::to_string(out) + " is outside [" +
                                    std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return out;
}

inline uint64_t ArgPtr(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = ArgAt(info, i, name);
  if (!v.IsBigInt()) ThrowInvalidArg(info.Env(), std::string("argument '") + name + "' must be a bigint device pointer");
  bool lossless = false;
  uint64_t p = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) ThrowInvalidArg(info.Env(), std::string("argument '") + name + "' is not a valid pointer");
  return p;
}

inline Napi::Object ArgObject(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = ArgAt(info, i, name);
  if (!v.IsObject()) ThrowInvalidArg(info.Env(), std::string("argument '") + name + "' must be an object");
  return v.As<Napi::Object>();
}

inline Napi::TypedArray ArgTypedArray(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = ArgAt(info, i, name);
  if (!v.IsTypedArray()) ThrowInvalidArg(info.Env(), std::string("argument '") + name + "' must be a typed array");
  return v.As<Napi::TypedArray>();
}

inline std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = ArgAt(info, i, name);
  if (!v.IsString()) ThrowInvalidArg(info.Env(), std::string("argument '") + name + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

inline Napi::BigInt PtrToJs(Napi::Env env, const void* p) {
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)));
}

}  // namespace wideep
