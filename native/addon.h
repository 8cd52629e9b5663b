// The addon instance: one per environment (main thread or worker_threads),
// holding the constructors that native code instantiates.
#pragma once

#include <napi.h>

namespace wideep {

class WideepAddon : public Napi::Addon<WideepAddon> {
 public:
  WideepAddon(Napi::Env env, Napi::Object exports);

  Napi::FunctionReference communicatorCtor;
  Napi::FunctionReference graphCtor;
};

inline WideepAddon& State(Napi::Env env) { return *env.GetInstanceData<WideepAddon>(); }

}  // namespace wideep
