// Makes `device` current for a scope and restores the previous device after.
#pragma once

#include <cuda_runtime_api.h>

namespace wideep {

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ != device) {
      cudaSetDevice(device);
      switched_ = previous_ >= 0;
    }
  }
  // Restores only what it changed: every launch passes through here, and the
  // device is almost always current already.
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool switched_ = false;
};

}  // namespace wideep
