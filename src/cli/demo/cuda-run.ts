/** Runs `wideep demo`'s worker on N ranks through the launcher and collects each rank's report. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { WideepError } from '../../errors.js';
import { runOnRanks } from '../../testing/ranks.js';
import { DEMO_SETTINGS_VAR, type DemoRankReport, type DemoWorkerSettings } from './gpu-layer.js';

export interface CudaDemoRun {
  /** Every rank exited 0. */
  ok: boolean;
  /** By rank; a rank that died before reporting is missing. */
  reports: DemoRankReport[];
  /** The workers' output and the launcher's notes. */
  log: string;
}

export async function runCudaDemo(ranks: number, env: Record<string, string>, settings: DemoWorkerSettings): Promise<CudaDemoRun> {
  // Beside this module in dist/; from a source checkout the CLI must be built first.
  const worker = fileURLToPath(new URL('./worker.js', import.meta.url));
  if (!existsSync(worker)) throw new WideepError('ERR_UNSUPPORTED', `demo: the GPU worker ${worker} is missing: run the built CLI (npm run build:ts, then npx wideep demo)`);
  // The reports are our worker's JSON lines.
  const { ok, reports, log } = await runOnRanks(worker, ranks, { ...env, [DEMO_SETTINGS_VAR]: JSON.stringify(settings) });
  return { ok, reports: (reports as unknown as DemoRankReport[]).sort((a, b) => a.rank - b.rank), log };
}
