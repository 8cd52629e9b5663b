// sleep(ns, stream): the JS entry of the sleep kernel (gpu_sleep.h).
#pragma once

#include <napi.h>

namespace wideep {

void GpuSleep(const Napi::CallbackInfo& info);

}  // namespace wideep
