/** Runs a GPU worker script on N ranks through the launcher and collects each rank's JSON report. */
import { fileURLToPath } from 'node:url';

import { launch } from '../../src/runtime/launcher.js';

export interface WorkerReport {
  rank: number;
  checks: number;
  failures: string[];
  [k: string]: unknown;
}

/** `graceMs`: how long workers may take to stop once one failed (the launcher's SIGTERM to SIGKILL, default 3000). */
export async function runWorkers(
  script: string,
  nproc: number,
  env: Record<string, string>,
  options: { graceMs?: number } = {},
): Promise<{ ok: boolean; reports: WorkerReport[]; log: string }> {
  let log = '';
  const reports: WorkerReport[] = [];
  const result = await launch({
    script: fileURLToPath(new URL(`./workers/${script}`, import.meta.url)),
    nprocPerNode: nproc,
    env: { ...process.env, ...env },
    graceMs: options.graceMs,
    stdout: (text) => {
      log += text;
      process.stderr.write(text);
      for (const line of text.split('\n')) {
        const m = /^\[rank \d+\] (\{.*\})$/.exec(line.trim());
        if (m) reports.push(JSON.parse(m[1]!) as WorkerReport);
      }
    },
    stderr: (text) => {
      log += text;
      process.stderr.write(text);
    },
  });
  // A rank killed from outside (the OOM killer, say) prints nothing itself.
  if (result.message) log += `\n[launcher] ${result.message}\n`;
  return { ok: result.ok, reports, log };
}
