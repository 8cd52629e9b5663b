// Host cost of CUDA launch flavours (with a ~350-byte parameter block, as the
// EP kernels take), event records and capture queries, from C++ with the GPU
// kept busy: the floor under what the addon's calls cost (docs/performance.md, "Host cost").
//   nvcc -O2 -arch=sm_90a -o /tmp/launch-costs scripts/gpu/launch-costs.cu && /tmp/launch-costs
#include <cstdio>
#include <chrono>
#include <vector>
#include <algorithm>
struct Big { void* p[40]; int n[8]; };
__global__ void __launch_bounds__(512, 1) k_big(Big b) { if (b.n[0] == 12345 && threadIdx.x == 0) *(int*)b.p[0] = 1; }
__global__ void spin(long long cycles) {
  const long long t0 = clock64();
  while (clock64() - t0 < cycles) {
  }
}
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e)); return 1; } } while (0)
using clk = std::chrono::steady_clock;
cudaStream_t gs;
template <class F> double med(F f) {
  spin<<<1, 1, 0, gs>>>(500000000LL);  // the GPU stays busy, so only host cost is timed
  std::vector<double> v;
  for (int i = 0; i < 200; ++i) { auto t0 = clk::now(); f(); v.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count()); }
  cudaStreamSynchronize(gs);
  std::sort(v.begin(), v.end()); return v[v.size() / 2];
}
int main() {
  cudaStream_t s; CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); gs = s;
  cudaEvent_t ev; CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  cudaEvent_t evt; CK(cudaEventCreate(&evt));
  Big b{}; int sms; CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  void* params[] = {&b};
  for (int round = 0; round < 3; ++round) {
    double plain = med([&] { k_big<<<sms, 512, 0, s>>>(b); });
    double coop = med([&] { cudaLaunchCooperativeKernel((const void*)k_big, dim3(sms), dim3(512), params, 0, s); });
    cudaLaunchAttribute attr; attr.id = cudaLaunchAttributeCooperative; attr.val.cooperative = 1;
    cudaLaunchConfig_t cfg{}; cfg.gridDim = dim3(sms); cfg.blockDim = dim3(512); cfg.stream = s; cfg.attrs = &attr; cfg.numAttrs = 1;
    double ex = med([&] { cudaLaunchKernelEx(&cfg, k_big, b); });
    cfg.numAttrs = 0;
    double exPlain = med([&] { cudaLaunchKernelEx(&cfg, k_big, b); });
    double rec = med([&] { cudaEventRecord(ev, s); });
    double recT = med([&] { cudaEventRecord(evt, s); });
    double cap = med([&] { cudaStreamCaptureStatus st; cudaStreamIsCapturing(s, &st); });
    CK(cudaGetLastError());
    printf("round %d (us, median of 200): plain %.2f  cooperative %.2f  launchEx+coop %.2f  launchEx %.2f  eventRecord %.2f  timedEventRecord %.2f  isCapturing %.2f\n",
           round, plain, coop, ex, exPlain, rec, recT, cap);
    CK(cudaStreamSynchronize(s));
  }
  return 0;
}
