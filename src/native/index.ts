/**
 * The only module that knows the addon exists. It loads the binary through
 * node-gyp-build, never throws at import, and explains every failure.
 */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { WideepError } from '../errors.js';
import type { ComputeBinding } from './compute.js';
import type { EpBinding } from './ep.js';
import type { NodeLegBinding } from './node-leg.js';

export type * from './compute.js';
export type * from './ep.js';
export type * from './node-leg.js';

const require = createRequire(import.meta.url);

/** Package root: this file sits in src/native/ (tests) or dist/native/ (published). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

// ---------------------------------------------------------------------------
// The binding's shape, written by hand (native/addon.cc is the other half).

export interface BuildInfo {
  /** CUDA code was compiled in. */
  cuda: boolean;
  /** nvcc targets, e.g. ["sm_90a", "compute_90"]. Empty without CUDA. */
  cudaArchs: string[];
  /** CUDART_VERSION the addon was compiled against (0 without CUDA). */
  cudaRuntimeCompiled: number;
  napiVersion: number;
  compiler: string;
}

export interface NativeDeviceProps {
  index: number;
  name: string;
  major: number;
  minor: number;
  totalMemory: number;
  multiProcessorCount: number;
  pciBusId: string;
  l2CacheBytes: number;
  sharedMemoryPerBlockOptin: number;
}

export interface NativeProbe {
  driverVersion: number;
  runtimeVersion: number;
  deviceCount: number;
  /** Set when cudaGetDeviceCount failed (no driver, no device, driver too old, ...). */
  error?: { code: string; message: string; status: number };
  devices: NativeDeviceProps[];
  peerAccess: boolean[][];
}

export interface NativeStream {
  readonly device: number;
  readonly handle: bigint;
  readonly closed: boolean;
  synchronize(): Promise<void>;
  query(): boolean;
  isCapturing(): boolean;
  waitEvent(event: NativeEvent): void;
  close(): void;
}

export interface NativeEvent {
  readonly device: number;
  readonly closed: boolean;
  record(stream: NativeStream): void;
  query(): boolean;
  synchronize(): Promise<void>;
  elapsedMs(end: NativeEvent): number;
  close(): void;
}

export interface NativeDeviceMemory {
  readonly ptr: bigint;
  readonly bytes: number;
  readonly device: number;
  readonly closed: boolean;
  close(stream?: NativeStream): void;
}

export interface NativeLibraryAttempt {
  path: string;
  error: string;
}

export interface NativeNcclLoad {
  loaded: boolean;
  path?: string;
  version?: number;
  attempts: NativeLibraryAttempt[];
}

/** What a captured graph holds (native/cuda/graph.cc describe()). */
export interface GraphShape {
  nodes: number;
  /** Nodes per type: kernel, memcpy, memset, eventRecord, memAlloc, ... (types present only). */
  byType: Record<string, number>;
  /** Nodes with no dependency: 1 for one stream's work. */
  roots: number;
  maxDependencies: number;
  maxDependents: number;
}

export interface NativeGraph {
  readonly closed: boolean;
  launch(stream: NativeStream): void;
  describe(): GraphShape;
  close(): void;
}

export interface CudaBinding extends EpBinding, NodeLegBinding, ComputeBinding {
  probe(): NativeProbe;
  Stream: new (device: number, priority?: number) => NativeStream;
  Event: new (device: number, timing?: boolean) => NativeEvent;
  DeviceMemory: new (bytes: number, stream: NativeStream) => NativeDeviceMemory;
  copyHostToDevice(dst: bigint, src: ArrayBufferView, stream: NativeStream): Promise<void>;
  copyDeviceToHost(dst: ArrayBufferView, src: bigint, stream: NativeStream): Promise<void>;
  copyDeviceToDevice(dst: bigint, src: bigint, bytes: number, stream: NativeStream): void;
  memset(ptr: bigint, value: number, bytes: number, stream: NativeStream): void;
  memGetInfo(device: number): { free: number; total: number };
  trimMemoryPool(device: number): void;
  /** cudaSetDevice on the calling thread. */
  setDevice(device: number): void;
  /** Keeps `stream` busy on the GPU for `ns` nanoseconds. */
  sleep(ns: number, stream: NativeStream): void;
  /** dlopen()s the first loadable candidate and resolves the NCCL API. Idempotent once loaded. */
  ncclLoad(candidates: string[]): NativeNcclLoad;
  Graph: {
    beginCapture(stream: NativeStream): void;
    endCapture(stream: NativeStream): NativeGraph;
  };
}

export interface NativeBinding {
  buildInfo(): BuildInfo;
  /** Present only when the addon was compiled with CUDA. */
  cuda?: CudaBinding;
}

// ---------------------------------------------------------------------------
// Loading and diagnosis.

export interface LoadAttempt {
  path: string;
  error: string;
  cause: string;
  fix: string;
}

export interface LoadReport {
  loaded: boolean;
  path?: string;
  attempts: LoadAttempt[];
}

const REBUILD =
  'npm rebuild wideep --foreground-scripts (needs python3, make and a C++17 compiler; GPU support also needs ' +
  'the CUDA toolkit, CMake and the cmake-js package; see docs/building.md)';
const REBUILD_WITH_CUDA =
  'install the CUDA toolkit 12.0 or newer (nvcc), CMake 3.18 or newer and the cmake-js package (npm install ' +
  'cmake-js), then run npm rebuild wideep --foreground-scripts, which says what it found (set CUDA_HOME if the ' +
  'toolkit is not in /usr/local/cuda; see docs/building.md)';
const NO_DRIVER = 'no NVIDIA driver is installed (libcuda.so.1 was not found)';

/** Names the cause and the fix for one failed load. Exported for tests. */
export function diagnoseLoadError(message: string): { cause: string; fix: string } {
  const glibc = /GLIBC_(\d+\.\d+)/.exec(message);
  if (glibc) {
    return {
      cause: `the binary needs glibc ${glibc[1]}, newer than this system's`,
      fix: `build from source on this machine: ${REBUILD}`,
    };
  }
  const cxx = /(GLIBCXX_[\d.]+|CXXABI_[\d.]+)/.exec(message);
  if (cxx) {
    return {
      cause: `the binary needs libstdc++ with ${cxx[1]}, newer than this system's`,
      fix: `install a newer libstdc++ or build from source: ${REBUILD}`,
    };
  }
  if (/No native build was found/.test(message)) {
    return {
      cause: 'no compiled addon: neither build/Release/wideep.node nor a prebuild for this platform exists',
      fix: REBUILD,
    };
  }
  if (/wrong ELF class|invalid ELF header|cannot open shared object file: No such file/.test(message)) {
    return { cause: 'the binary is for another platform or is damaged', fix: REBUILD };
  }
  if (/NODE_MODULE_VERSION|napi/i.test(message)) {
    return { cause: 'the binary was built for an incompatible Node-API version', fix: REBUILD };
  }
  const lib = /(lib[\w+.-]+\.so[\d.]*): cannot open shared object file/.exec(message);
  if (lib) {
    return { cause: `a shared library it links, ${lib[1]}, is missing`, fix: `install ${lib[1]} or ${REBUILD}` };
  }
  return { cause: 'the addon failed to load', fix: REBUILD };
}

function candidatePaths(): { paths: string[]; resolveError?: string } {
  const paths: string[] = [];
  let resolveError: string | undefined;
  try {
    const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
    paths.push(nodeGypBuild.resolve(PACKAGE_ROOT));
  } catch (e) {
    resolveError = (e as Error).message;
  }
  if (!process.env.PREBUILDS_ONLY) {
    for (const f of ['build/Release/wideep.node', 'build/Debug/wideep.node']) {
      const p = join(PACKAGE_ROOT, f);
      if (existsSync(p)) paths.push(p);
    }
  }
  const pre = join(PACKAGE_ROOT, 'prebuilds', `${process.platform}-${process.arch}`);
  if (existsSync(pre)) {
    for (const f of readdirSync(pre)) if (f.endsWith('.node')) paths.push(join(pre, f));
  }
  return { paths: [...new Set(paths)], resolveError };
}

/**
 * The CUDA runtime reports a missing driver library as "CUDA driver version is
 * insufficient"; a driver version of 0 tells the two apart. Exported for tests.
 */
export function diagnoseProbe(probe: NativeProbe): NativeProbe {
  const e = probe.error;
  if (e?.code !== 'CUDA_ERROR_INSUFFICIENT_DRIVER' || probe.driverVersion !== 0) return probe;
  return { ...probe, error: { ...e, message: NO_DRIVER } };
}

/** The binding as the library sees it: the addon's exports, with the probe's diagnosis. */
function wrap(raw: NativeBinding): NativeBinding {
  const cuda = raw.cuda;
  if (!cuda) return raw;
  return { ...raw, cuda: { ...cuda, probe: () => diagnoseProbe(cuda.probe()) } };
}

let binding: NativeBinding | undefined;
let report: LoadReport | undefined;

function load(): LoadReport {
  const attempts: LoadAttempt[] = [];
  const { paths, resolveError } = candidatePaths();
  if (paths.length === 0) {
    const error = resolveError ?? 'No native build was found';
    attempts.push({ path: join(PACKAGE_ROOT, 'build/Release/wideep.node'), error, ...diagnoseLoadError(error) });
  }
  for (const path of paths) {
    try {
      binding = wrap(require(path) as NativeBinding);
      return { loaded: true, path, attempts };
    } catch (e) {
      const error = (e as Error).message;
      attempts.push({ path, error, ...diagnoseLoadError(error) });
    }
  }
  return { loaded: false, attempts };
}

/** How loading went. Loads on first call; never throws. */
export function nativeLoadReport(): LoadReport {
  report ??= load();
  return report;
}

/** The binding, or undefined when it could not be loaded. */
export function getNative(): NativeBinding | undefined {
  nativeLoadReport();
  return binding;
}

/** The CUDA half of the binding, or a WideepError that says why there is none. */
export function requireCuda(feature: string): CudaBinding {
  const b = getNative();
  if (!b) {
    const r = nativeLoadReport();
    const first = r.attempts[0];
    throw new WideepError(
      'ERR_NO_ADDON',
      `${feature} needs the native addon, which did not load: ${first?.cause ?? 'unknown'} (${first?.path ?? '?'}). Fix: ${first?.fix ?? REBUILD}`,
    );
  }
  if (!b.cuda) {
    throw new WideepError(
      'ERR_NO_GPU',
      `${feature} needs CUDA, but the addon was built without it. Fix: ${REBUILD_WITH_CUDA}; or use the cpu backend.`,
    );
  }
  return b.cuda;
}

/**
 * How to get an addon with CUDA, when the one here lacks it (none loaded, or
 * built without CUDA); undefined when it has CUDA. `wideep doctor` prints it.
 */
export function rebuildAdvice(): string | undefined {
  const b = getNative();
  if (!b) return nativeLoadReport().attempts[0]?.fix ?? REBUILD;
  return b.buildInfo().cuda ? undefined : REBUILD_WITH_CUDA;
}
