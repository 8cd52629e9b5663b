import { WideepError } from '../errors.js';
import { requireCuda } from '../native/index.js';
import { NCCL_LIBRARY, libraryCandidates } from '../runtime/shared-libraries.js';

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
  const candidates = libraryCandidates(NCCL_LIBRARY);
  const r = cuda.ncclLoad(candidates.map((c) => c.path));
  if (!r.loaded || r.path === undefined || r.version === undefined) {
    const tried = candidates
      .map((c) => `  ${c.path} (${c.source}): ${r.attempts.find((a) => a.path === c.path)?.error ?? 'not tried'}`)
      .join('\n');
    throw new WideepError(
      'ERR_NCCL_NOT_FOUND',
      `libnccl.so.2 was not found. Tried, in order:\n${tried}\n` +
        'Install NCCL (pip install nvidia-nccl-cu13, or the libnccl2 package) or set WIDEEP_NCCL_LIBRARY to the file.',
    );
  }
  loaded = { path: r.path, version: r.version };
  return loaded;
}
