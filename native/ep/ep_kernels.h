// Host-callable launchers of the EP kernels (defined in the .cu files).
#pragma once

#include <cuda_runtime_api.h>

#include "ep/ep_params.h"

namespace wideep::ep {

// A cooperative launch of one block per 512 tokens (up to 32; one when cached).
cudaError_t LaunchNotify(const NotifyArgs& a, cudaStream_t stream);
cudaError_t LaunchDispatch(const DispatchArgs& a, int numSms, cudaStream_t stream);
// numSendSms: blocks that push rows (the rest reduce); 0 picks the default share.
cudaError_t LaunchCombine(const CombineArgs& a, int numSms, int numSendSms, cudaStream_t stream);

}  // namespace wideep::ep

namespace wideep::ep {

cudaError_t LaunchLowLatencyDispatchSend(const LowLatencyArgs& a, int numSms, cudaStream_t stream);
// The receive grid is 1 to 4 blocks per local expert, as many as numSms allows.
cudaError_t LaunchLowLatencyDispatchRecv(const LowLatencyArgs& a, int numSms, cudaStream_t stream);
// Send and receive in one launch (no hook).
cudaError_t LaunchLowLatencyDispatch(const LowLatencyArgs& a, int numSms, cudaStream_t stream);
cudaError_t LaunchLowLatencyCombine(const LowLatencyArgs& a, int numSms, cudaStream_t stream);
cudaError_t LaunchLowLatencyCombineSend(const LowLatencyArgs& a, int numSms, cudaStream_t stream);
cudaError_t LaunchLowLatencyCombineRecv(const LowLatencyArgs& a, int numSms, cudaStream_t stream);

}  // namespace wideep::ep

namespace wideep::ep {

// Benchmark baseline steps (see baseline.cu).
cudaError_t LaunchGatherRows(void* dst, const void* src, const int32_t* idx, int n, int rowBytes, int numSms,
                             cudaStream_t stream);
cudaError_t LaunchScatterAddBf16(void* out, const void* src, const int32_t* idx, int n, int hidden, int numSms,
                                 cudaStream_t stream);

}  // namespace wideep::ep
