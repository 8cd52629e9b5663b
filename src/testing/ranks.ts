/**
 * Running a worker script on N ranks for an integration test, the way our
 * own GPU suites do: one process per rank through the launcher, each rank
 * printing one JSON report line, collected and returned with the job's log.
 * Where the machine has fewer GPUs than ranks, `placement` says whether the
 * ranks can share GPU 0 (WIDEEP_TEST_SHARE_GPU=1) or must skip, with the
 * reason to print, so that a skip is never mistaken for a pass.
 */
import { deviceCount } from '../cuda/device.js';
import { launch } from '../runtime/launcher.js';

export interface RankReport {
  rank: number;
  /** Comparisons the rank made. */
  checks: number;
  /** What failed; empty when everything matched. */
  failures: string[];
  [k: string]: unknown;
}

export interface RanksResult {
  /** Every rank exited 0. */
  ok: boolean;
  reports: RankReport[];
  log: string;
}

/** The JSON object of a line `[rank N] {...}` as the launcher prefixes worker output, or undefined. */
export function parseRankReport(line: string): RankReport | undefined {
  const m = /^\[rank \d+\] (\{.*\})$/.exec(line.trim());
  return m ? (JSON.parse(m[1]!) as RankReport) : undefined;
}

export interface RunOnRanksOptions {
  /** Arguments for the script. */
  args?: readonly string[];
  /** Also shows the workers' output as it comes (e.g. `(t) => process.stderr.write(t)`). */
  echo?: (text: string) => void;
  /** How long workers may take to stop once one failed (the launcher's SIGTERM to SIGKILL). */
  graceMs?: number;
}

/** Runs `script` on `nproc` ranks with `env` added; resolves when every rank has exited. */
export async function runOnRanks(script: string, nproc: number, env: Record<string, string> = {}, options: RunOnRanksOptions = {}): Promise<RanksResult> {
  let log = '';
  const reports: RankReport[] = [];
  const keep = (text: string): void => {
    log += text;
    options.echo?.(text);
  };
  const collect = (text: string): void => {
    keep(text);
    for (const line of text.split('\n')) {
      const r = parseRankReport(line);
      if (r) reports.push(r);
    }
  };
  const result = await launch({ script, args: options.args, nprocPerNode: nproc, env: { ...process.env, ...env }, graceMs: options.graceMs, stdout: collect, stderr: keep });
  // A rank killed from outside (the OOM killer, say) prints nothing itself.
  if (result.message) log += `\n[launcher] ${result.message}\n`;
  return { ok: result.ok, reports, log };
}

export interface Placement {
  /** The ranks can run here. */
  run: boolean;
  /** Extra environment: WIDEEP_DEVICE=0 when the ranks share GPU 0. */
  env: Record<string, string>;
  /** A title fragment saying where they run, or why not. */
  reason: string;
}

/**
 * Where `nproc` ranks run: one GPU each when enough are visible, all on GPU 0
 * when WIDEEP_TEST_SHARE_GPU=1 (the logic across processes, not NVLink), or nowhere.
 */
export function placement(nproc: number, options: { canShare?: boolean } = {}): Placement {
  const gpus = deviceCount();
  if (gpus >= nproc) return { run: true, env: {}, reason: `${nproc} GPU${nproc === 1 ? '' : 's'}` };
  if (gpus >= 1 && options.canShare !== false && process.env.WIDEEP_TEST_SHARE_GPU === '1') {
    return { run: true, env: { WIDEEP_DEVICE: '0' }, reason: `${nproc} ranks sharing GPU 0` };
  }
  return { run: false, env: {}, reason: `needs ${nproc} GPU${nproc === 1 ? '' : 's'}, ${gpus} visible` };
}
