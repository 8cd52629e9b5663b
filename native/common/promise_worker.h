// An AsyncWorker that settles a Promise: Run() executes on a libuv pool thread
// (so blocking waits never stall the event loop) and records a Failure instead
// of throwing; Resolve() builds the result back on the JS thread.
#pragma once

#include <napi.h>

#include "common/errors.h"

namespace wideep {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Queue() {
    Napi::Promise p = deferred_.Promise();
    Napi::AsyncWorker::Queue();
    return p;
  }

 protected:
  virtual Failure Run() = 0;
  virtual Napi::Value Resolve(Napi::Env env) { return env.Undefined(); }

 private:
  void Execute() override { failure_ = Run(); }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (failure_.ok()) {
      deferred_.Resolve(Resolve(env));
    } else {
      deferred_.Reject(MakeError(env, failure_).Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
  Failure failure_;
};

}  // namespace wideep
