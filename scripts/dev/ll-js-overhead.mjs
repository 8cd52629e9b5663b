// The JavaScript cost of the low-latency calls, with every native call
// replaced by a no-op: what the library itself adds on top of the kernel
// launches, measurable on a machine without a GPU. Needs the built addon
// (for the baton layout) and dist/. Prints median microseconds per call.
//   node scripts/dev/ll-js-overhead.mjs [iterations]
import { EpBuffer, Tensor, TcpStoreServer, initProcessGroup } from '../../dist/index.js';
import { median } from '../../dist/cli/bench/stats.js';
import { requireCuda } from '../../dist/native/index.js';

const ITERS = Number(process.argv[2] ?? 20000);
const cuda = requireCuda('ll-js-overhead');

// ---- a native layer that does nothing ----------------------------------------
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
    nextPtr += BigInt(bytes + 256);
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

// ---- one rank with a real store --------------------------------------------------
const server = await TcpStoreServer.listen({ host: '127.0.0.1', port: 0 });
const env = { RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(server.port) };
const pg = await initProcessGroup({ env });
const T = 128;
const H = 7168;
const k = 8;
const buffer = await EpBuffer.create(pg, { backend: 'cuda', hidden: H, numExperts: 256, maxTokensPerRank: 128, maxTopk: k, lowLatency: { maxTokensPerRank: T } });
const device = `cuda:${pg.device}`;
const x = Tensor.empty([T, H], 'bf16', { device });
const topkIdx = Tensor.empty([T, k], 'i32', { device });
const topkWeights = Tensor.empty([T, k], 'f32', { device });
const y = Tensor.empty([buffer.numLocalExperts, T, H], 'bf16', { device });
const out = Tensor.empty([T, H], 'bf16', { device });
const dispatchArgs = { x, topkIdx, maxTokensPerRank: T, numExperts: 256 };

const us = { dispatch: [], combine: [] };
for (let i = 0; i < ITERS; i++) {
  const t0 = performance.now();
  const d = await buffer.lowLatencyDispatch(dispatchArgs);
  const t1 = performance.now();
  await buffer.lowLatencyCombine({ y, topkIdx, topkWeights, handle: d.handle, out });
  const t2 = performance.now();
  us.dispatch.push((t1 - t0) * 1e3);
  us.combine.push((t2 - t1) * 1e3);
}
console.log(JSON.stringify({ iterations: ITERS, medianUs: { dispatch: +median(us.dispatch).toFixed(2), combine: +median(us.combine).toFixed(2) } }));
await buffer.close();
await pg.close();
await server.close();
