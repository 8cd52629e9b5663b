/**
 * EP dispatch/combine on 1 GPU (its own only peer), 2, 4 and 8 GPUs (where
 * visible) against the cpu backend (docs/architecture.md "EP semantics"), fresh random
 * inputs each run, outputs poisoned before every launch. Each case runs in
 * real worker processes, one per GPU.
 */
import { describe, expect, it } from 'vitest';

import { RANK_COUNTS, placement } from './gpu-env.js';
import { runWorkers } from './run-workers.js';

const NORMAL_CASES = [
  { T: 1, H: 2048, k: 1, E: 'R', routing: 'uniform', reps: 100 },
  { T: 7, H: 4096, k: 6, E: 64, routing: 'zipf', drop: 0.2, reps: 100, cached: true, idx64: true },
  { T: 128, H: 7168, k: 8, E: 256, routing: 'uniform', drop: 0.1, reps: 100, fp8Input: true, align: 8 },
  { T: 128, H: 2048, k: 8, E: 64, routing: 'zipf', zeroRank: 1, reps: 100, bias: true, sendSms: 23 },
  { T: 128, H: 4096, k: 6, E: 256, routing: 'uniform', reps: 100, worst: 512 },
  { T: 4096, H: 7168, k: 8, E: 256, routing: 'uniform', reps: 2, fp8Input: true, cached: true },
  { T: 4096, H: 4096, k: 6, E: 64, routing: 'zipf', drop: 0.05, reps: 1 },
  { T: 128, H: 4096, k: 8, E: 64, routing: 'uniform', worst: 1024, replays: 100 },
];

const LOW_LATENCY_CASES = [
  { M: 1, H: 2048, k: 1, E: 'R', routing: 'uniform', fp8: true, reps: 100 },
  { M: 16, H: 4096, k: 6, E: 64, routing: 'zipf', drop: 0.2, fp8: false, reps: 100, hooks: true },
  { M: 128, H: 7168, k: 8, E: 256, routing: 'uniform', drop: 0.05, fp8: true, reps: 30, hooks: true },
  { M: 128, H: 7168, k: 8, E: 256, routing: 'uniform', fp8: false, roundScale: true, reps: 10 },
  { M: 256, H: 7168, k: 9, E: 288, routing: 'zipf', fp8: true, roundScale: true, reps: 10, hooks: true },
  { M: 128, H: 7168, k: 8, E: 256, routing: 'uniform', fp8: true, replays: 1000 },
];

// One rank runs every kernel with its own GPU as the only peer (nothing crosses
// NVLink), so a machine of one GPU tests them too; with shareGpu, n ranks share it.
for (const n of [1, ...RANK_COUNTS]) {
  const place = placement(n);
  const env = (cases: unknown[]) => ({ ...place.env, WIDEEP_TEST_CASES: JSON.stringify(cases), WIDEEP_POISON_OUTPUTS: '1' });
  // Every worker also runs the cpu oracle for all n ranks, so the time grows with n;
  // ranks sharing a GPU take turns on it.
  const timeout = Math.max(300_000, 100_000 * n) * (place.shared ? 2 : 1);
  describe.skipIf(!place.runs)(`EP on ${place.title}`, { timeout }, () => {
    it('normal dispatch/combine match the cpu backend', async () => {
      const { ok, reports, log } = await runWorkers('ep-normal.mjs', n, env(NORMAL_CASES));
      expect(reports.map((r) => r.failures).flat(), log.slice(-4000)).toEqual([]);
      expect(reports, log.slice(-2000)).toHaveLength(n);
      for (const r of reports) expect(r.checks).toBeGreaterThan(1000);
      expect(ok).toBe(true);
    });

    it.skipIf(n === 1)('a rank that never dispatches makes the others fail with ERR_TIMEOUT, not hang', async () => {
      const { ok, reports, log } = await runWorkers('ep-timeout.mjs', n, place.env);
      expect(reports.map((r) => r.failures).flat(), log.slice(-4000)).toEqual([]);
      expect(reports.filter((r) => r.code === 'ERR_TIMEOUT')).toHaveLength(n - 1);
      expect(ok).toBe(true);
    });

    it('low-latency input the host cannot check: a top-k id past numExperts fails only its rank, disagreeing k every rank', async () => {
      const { ok, reports, log } = await runWorkers('ep-ll-bad-ids.mjs', n, place.env);
      expect(reports.map((r) => r.failures).flat(), log.slice(-4000)).toEqual([]);
      expect(reports, log.slice(-2000)).toHaveLength(n);
      expect(ok).toBe(true);
    });

    it('low-latency dispatch/combine match the cpu backend, and graph replays do not drift', async () => {
      const { ok, reports, log } = await runWorkers('ep-low-latency.mjs', n, env(LOW_LATENCY_CASES));
      expect(reports.map((r) => r.failures).flat(), log.slice(-4000)).toEqual([]);
      expect(reports, log.slice(-2000)).toHaveLength(n);
      for (const r of reports) expect(r.checks).toBeGreaterThan(1000);
      expect(ok).toBe(true);
    });
  });
}
