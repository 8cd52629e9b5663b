/** Runs a GPU worker script of ./workers on N ranks (wideep/testing's runOnRanks), its output shown as it comes. */
import { fileURLToPath } from 'node:url';

import { runOnRanks, type RanksResult } from '../../src/testing/ranks.js';

export type { RankReport as WorkerReport } from '../../src/testing/ranks.js';

/** `graceMs`: how long workers may take to stop once one failed (the launcher's SIGTERM to SIGKILL, default 3000). */
export function runWorkers(script: string, nproc: number, env: Record<string, string>, options: { graceMs?: number } = {}): Promise<RanksResult> {
  const path = fileURLToPath(new URL(`./workers/${script}`, import.meta.url));
  return runOnRanks(path, nproc, env, { ...options, echo: (t) => void process.stderr.write(t) });
}
