// A native layer that does nothing, for measuring the library's own
// JavaScript on a machine without a GPU: every CUDA, EP and compute call the
// library makes becomes a no-op, while batons keep their real layouts (so the
// built addon must be there). Used by ll-js-overhead.mjs and moe-js-overhead.mjs.
import { requireCuda } from '../../dist/native/index.js';

/** Replaces the addon's methods with no-ops; call before the library makes any native object. */
export function stubNative(where) {
  const cuda = requireCuda(where);
  let nextPtr = 0x100000n;
  const props = { name: 'stub', major: 9, minor: 0, multiProcessorCount: 132, totalGlobalMem: 2 ** 37 };
  cuda.probe = () => ({ driverVersion: 13000, runtimeVersion: 13000, deviceCount: 1, devices: [props], peerAccess: [[true]] });
  cuda.setDevice = () => {};
  cuda.memGetInfo = () => ({ free: 2 ** 37, total: 2 ** 37 });
  cuda.memset = () => {};
  cuda.copyHostToDevice = async () => {};
  cuda.Stream = class {
    constructor(device) {
      this.device = device;
      this.handle = 1n;
      this.closed = false;
    }
    async synchronize() {}
    query() {
      return true;
    }
    isCapturing() {
      return false;
    }
    waitEvent() {}
    close() {}
  };
  cuda.Event = class {
    constructor(device) {
      this.device = device;
      this.closed = false;
    }
    record() {}
    query() {
      return true;
    }
    async synchronize() {}
    elapsedMs() {
      return 0;
    }
    close() {}
  };
  cuda.DeviceMemory = class {
    constructor(bytes) {
      this.bytes = bytes;
      this.ptr = nextPtr;
      // 256-byte aligned, as cudaMallocAsync's are.
      nextPtr += BigInt(Math.ceil(bytes / 256) * 256 + 256);
      this.device = 0;
      this.closed = false;
    }
    close() {}
  };
  const realEpBuffer = cuda.EpBuffer;
  cuda.EpBuffer = class {
    static batonLayout() {
      return realEpBuffer.batonLayout();
    }
    constructor() {
      this.base = 0x7000000000n;
      this.closed = false;
    }
    ipcHandle() {
      return new Uint8Array(64);
    }
    openPeers() {}
    configure() {}
    // The launches record the call's event themselves (true: recorded).
    lowLatencyDispatch() {
      return true;
    }
    lowLatencyDispatchSend() {
      return true;
    }
    lowLatencyDispatchRecv() {
      return false;
    }
    lowLatencyCombine() {
      return true;
    }
    lowLatencyCombineSend() {
      return true;
    }
    lowLatencyCombineRecv() {
      return false;
    }
    cleanLowLatency() {}
    readStatus() {
      return null;
    }
    async close() {}
  };
  // Expert compute: cuBLASLt and the MoE kernels.
  cuda.blasLoad = (paths) => ({ loaded: true, path: paths[0] ?? 'libcublasLt.so', version: 130000, attempts: [] });
  const realBlas = cuda.BlasHandle;
  cuda.BlasHandle = class {
    static fields() {
      return realBlas.fields();
    }
    constructor(device) {
      this.device = device;
      this.closed = false;
    }
    matmul() {}
    close() {}
  };
  for (const name of ['routerTopk', 'swiglu', 'permute', 'unpermute', 'transposeScales', 'fillValue', 'fillRandom', 'sleep', 'copyDeviceToDevice']) cuda[name] = () => {};
  cuda.Graph = {
    beginCapture() {},
    endCapture: () => ({ closed: false, launch() {}, close() {} }),
  };
  return cuda;
}
