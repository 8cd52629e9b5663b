/**
 * What this machine can do, as one plain object. capabilities() never throws:
 * every failure becomes a `reason` that says what is missing and what to do.
 */
import { CUBLASLT_LIBRARY, formatBlasVersion } from './blas/library.js';
import { getNative, nativeLoadReport, type CudaBinding, type LoadAttempt, type NativeProbe } from './native/index.js';
import {
  NCCL_LIBRARY,
  libraryCandidates,
  loadRuntimeLibrary,
  type LibraryCandidate,
  type NativeLibraryLoad,
  type RuntimeLibrarySpec,
} from './runtime/shared-libraries.js';

export interface GpuInfo {
  index: number;
  name: string;
  computeCapability: string;
  memoryBytes: number;
  smCount: number;
  pciBusId: string;
  l2CacheBytes: number;
  /** This build has code that runs on it (sm_90a, or compute_90 PTX on newer GPUs). */
  supported: boolean;
}

/** A shared library the addon loads at run time (NCCL, cuBLASLt): where it was found, or every path tried. */
export interface RuntimeLibraryInfo {
  found: boolean;
  path?: string;
  version?: string;
  versionCode?: number;
  /** Why it was not found, and what to do. */
  reason?: string;
  tried: (LibraryCandidate & { error?: string })[];
}

export type NcclInfo = RuntimeLibraryInfo;

export interface Capabilities {
  node: string;
  platform: string;
  arch: string;
  addon: {
    loaded: boolean;
    path?: string;
    cuda: boolean;
    cudaArchs: string[];
    cudaRuntimeCompiled?: string;
    compiler?: string;
    attempts: LoadAttempt[];
  };
  cuda: {
    available: boolean;
    driverVersion?: string;
    runtimeVersion?: string;
    deviceCount: number;
    reason?: string;
  };
  gpus: GpuInfo[];
  /** peerAccess[i][j]: GPU i can map GPU j's memory (true on the diagonal). */
  peerAccess: boolean[][];
  nccl: NcclInfo;
  /** cuBLASLt, which runs the expert GEMMs (12.9+ for the fp8 block scales). */
  cublasLt: RuntimeLibraryInfo;
  warnings: string[];
}

/** 13000 -> "13.0". */
export function formatCudaVersion(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

/** 22809 -> "2.28.9" (NCCL >= 2.9 encoding). */
export function formatNcclVersion(v: number): string {
  return v >= 10000
    ? `${Math.floor(v / 10000)}.${Math.floor((v % 10000) / 100)}.${v % 100}`
    : `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 100)}.${v % 100}`;
}

/** Explains a failed cudaGetDeviceCount. Exported for tests. */
export function explainCudaError(probe: Pick<NativeProbe, 'driverVersion' | 'error'>, runtimeCompiled: number): string {
  const code = probe.error?.code ?? '';
  if (code === 'CUDA_ERROR_NO_DEVICE') {
    return 'no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES); the cpu backend still works';
  }
  if (code === 'CUDA_ERROR_INSUFFICIENT_DRIVER' || code === 'CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE') {
    if (probe.driverVersion === 0) {
      return 'no NVIDIA driver is installed (libcuda.so.1 was not found), so there is no GPU to use; the cpu backend still works';
    }
    return (
      `the NVIDIA driver supports CUDA ${formatCudaVersion(probe.driverVersion)}, older than the CUDA ` +
      `${formatCudaVersion(runtimeCompiled)} runtime this addon was built with: install a driver for CUDA ` +
      `${formatCudaVersion(runtimeCompiled)} or newer (R580+ for CUDA 13), or rebuild against an older toolkit`
    );
  }
  return `CUDA is unusable: ${probe.error?.message ?? 'unknown error'}`;
}

function archSupports(archs: string[], major: number, minor: number): boolean {
  const cc = major * 10 + minor;
  return archs.some((a) => {
    const m = /^(sm|compute)_(\d+)a?$/.exec(a);
    if (!m) return false;
    const target = Number(m[2]);
    return m[1] === 'sm' ? target === cc : target <= cc;
  });
}

interface LibraryProbe {
  spec: RuntimeLibrarySpec;
  what: string;
  load(cuda: CudaBinding, paths: string[]): NativeLibraryLoad;
  format(version: number): string;
  fix: string;
}

const PROBES = {
  nccl: {
    spec: NCCL_LIBRARY,
    what: 'NCCL',
    load: (cuda, paths) => cuda.ncclLoad(paths),
    format: formatNcclVersion,
    fix: 'install NCCL (e.g. pip install nvidia-nccl-cu13, or the libnccl2 package), or point WIDEEP_NCCL_LIBRARY at the file',
  },
  cublasLt: {
    spec: CUBLASLT_LIBRARY,
    what: 'cuBLASLt',
    load: (cuda, paths) => cuda.blasLoad(paths),
    format: formatBlasVersion,
    fix: `install cuBLAS 12.9+ (e.g. pip install nvidia-cublas, or the CUDA toolkit), or point ${CUBLASLT_LIBRARY.overrideVar} at the file`,
  },
} satisfies Record<string, LibraryProbe>;

function probeLibrary(p: LibraryProbe, loadable: boolean): RuntimeLibraryInfo {
  const cuda = getNative()?.cuda;
  if (!loadable || !cuda) {
    return { found: false, reason: `${p.what} is loaded by the CUDA part of the addon, which is not available here`, tried: libraryCandidates(p.spec) };
  }
  const r = loadRuntimeLibrary(p.spec, (paths) => p.load(cuda, paths));
  if (r.loaded) {
    return { found: true, path: r.path, versionCode: r.version, version: r.version ? p.format(r.version) : undefined, tried: r.tried };
  }
  return { found: false, reason: `${p.spec.soname} was not found: ${p.fix}`, tried: r.tried };
}

function probeLibraries(caps: Capabilities, loadable: boolean): void {
  caps.nccl = probeLibrary(PROBES.nccl, loadable);
  caps.cublasLt = probeLibrary(PROBES.cublasLt, loadable);
}

/** Reports the addon, CUDA, GPUs, peer access, NCCL and cuBLASLt. Never throws. */
export function capabilities(): Capabilities {
  const caps: Capabilities = {
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    addon: { loaded: false, cuda: false, cudaArchs: [], attempts: [] },
    cuda: { available: false, deviceCount: 0 },
    gpus: [],
    peerAccess: [],
    nccl: { found: false, tried: [] },
    cublasLt: { found: false, tried: [] },
    warnings: [],
  };
  try {
    const report = nativeLoadReport();
    caps.addon.attempts = report.attempts;
    const native = getNative();
    if (!native) {
      caps.cuda.reason = `the native addon did not load: ${report.attempts[0]?.cause ?? 'unknown'}`;
      probeLibraries(caps, false);
      return caps;
    }
    const info = native.buildInfo();
    caps.addon = {
      loaded: true,
      path: report.path,
      cuda: info.cuda,
      cudaArchs: info.cudaArchs,
      cudaRuntimeCompiled: info.cuda ? formatCudaVersion(info.cudaRuntimeCompiled) : undefined,
      compiler: info.compiler,
      attempts: report.attempts,
    };
    if (!native.cuda) {
      caps.cuda.reason = 'the addon was built without CUDA (no CUDA toolkit at build time); the cpu backend works';
      probeLibraries(caps, false);
      return caps;
    }
    const probe = native.cuda.probe();
    caps.cuda.driverVersion = probe.driverVersion ? formatCudaVersion(probe.driverVersion) : undefined;
    caps.cuda.runtimeVersion = probe.runtimeVersion ? formatCudaVersion(probe.runtimeVersion) : undefined;
    if (probe.error) {
      caps.cuda.reason = explainCudaError(probe, info.cudaRuntimeCompiled);
    } else {
      caps.cuda.available = probe.deviceCount > 0;
      caps.cuda.deviceCount = probe.deviceCount;
      caps.gpus = probe.devices.map((d) => ({
        index: d.index,
        name: d.name,
        computeCapability: `${d.major}.${d.minor}`,
        memoryBytes: d.totalMemory,
        smCount: d.multiProcessorCount,
        pciBusId: d.pciBusId,
        l2CacheBytes: d.l2CacheBytes,
        supported: archSupports(info.cudaArchs, d.major, d.minor),
      }));
      caps.peerAccess = probe.peerAccess;
      for (const g of caps.gpus) {
        if (!g.supported) {
          caps.warnings.push(
            `GPU ${g.index} (${g.name}, compute capability ${g.computeCapability}) cannot run this build, which holds ` +
              `${info.cudaArchs.join(' + ')}: Hopper (9.0) or newer is needed`,
          );
        }
      }
      const n = caps.gpus.length;
      if (n > 1 && caps.peerAccess.some((row, i) => row.some((ok, j) => i !== j && !ok))) {
        caps.warnings.push('some GPU pairs lack peer access: the NVLink dispatch/combine kernels need all pairs');
      }
    }
    probeLibraries(caps, true);
  } catch (e) {
    caps.warnings.push(`capability probe failed: ${(e as Error).message}`);
  }
  return caps;
}
