#include "dynlib/runtime_library.h"

#include "common/args.h"

namespace wideep {

Napi::Object LibraryLoadToJs(Napi::Env env, const LibraryLoad& load) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("loaded", load.loaded);
  if (load.loaded) {
    out.Set("path", load.path);
    out.Set("version", load.version);
  }
  Napi::Array attempts = Napi::Array::New(env);
  for (size_t i = 0; i < load.attempts.size(); ++i) {
    Napi::Object a = Napi::Object::New(env);
    a.Set("path", load.attempts[i].path);
    a.Set("error", load.attempts[i].error);
    attempts.Set(static_cast<uint32_t>(i), a);
  }
  out.Set("attempts", attempts);
  return out;
}

std::vector<std::string> ArgStringList(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Napi::Value arg = ArgAt(info, i, what);
  if (!arg.IsArray()) ThrowInvalidArg(info.Env(), std::string(what) + ": expected an array of paths");
  Napi::Array arr = arg.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t k = 0; k < arr.Length(); ++k) {
    Napi::Value v = arr.Get(k);
    if (!v.IsString()) ThrowInvalidArg(info.Env(), std::string(what) + ": every candidate must be a string");
    out.push_back(v.As<Napi::String>().Utf8Value());
  }
  return out;
}

}  // namespace wideep
