import { WideepError } from '../errors.js';
import { requireCuda } from '../native/index.js';
import { NCCL_LIBRARY, describeTried, loadRuntimeLibrary } from '../runtime/shared-libraries.js';

export interface LoadedNccl {
  path: string;
  version: number;
}

let loaded: LoadedNccl | undefined;

/**
 * Loads libnccl.so.2 through the library's own search (override, NCCL_HOME,
 * system path, Python wheels); ERR_NCCL_NOT_FOUND lists every path tried.
 */
export function loadNccl(): LoadedNccl {
  if (loaded) return loaded;
  const cuda = requireCuda('NCCL');
  const r = loadRuntimeLibrary(NCCL_LIBRARY, (paths) => cuda.ncclLoad(paths));
  if (!r.loaded || r.path === undefined || r.version === undefined) {
    throw new WideepError(
      'ERR_NCCL_NOT_FOUND',
      `libnccl.so.2 was not found. Tried, in order:\n${describeTried(r.tried)}\n` +
        'Install NCCL (pip install nvidia-nccl-cu13, or the libnccl2 package) or set WIDEEP_NCCL_LIBRARY to the file.',
    );
  }
  loaded = { path: r.path, version: r.version };
  return loaded;
}
