/**
 * EP reliability on the GPU (issue 18), each case in real worker processes
 * through the launcher, ranks sharing GPU 0 where GPUs are fewer
 * (WIDEEP_TEST_SHARE_GPU=1): a call refused on one rank fails on every rank
 * and the next ones move the right rows; dispatches back to back let a rank
 * run ahead of its peers without their counts mixing up; long runs keep
 * device and host memory flat (WIDEEP_SOAK_ITERATIONS per mode, default
 * 10,000); a rank killed mid-dispatch leaves every survivor a typed error in
 * bounded time.
 */
import { describe, expect, it } from 'vitest';

import { placement } from './gpu-env.js';
import { runWorkers } from './run-workers.js';

const SOAK_ITERATIONS = Number(process.env.WIDEEP_SOAK_ITERATIONS ?? 10_000);

for (const n of [2, 4]) {
  const place = placement(n);
  describe.skipIf(!place.runs)(`a call refused on one rank, on ${place.title}`, { timeout: 300_000 }, () => {
    it('fails on every rank (ERR_PEER naming it on the others), and the next iterations move the right rows', async () => {
      const { ok, reports, log } = await runWorkers('ep-mispair.mjs', n, { ...place.env, WIDEEP_POISON_OUTPUTS: '1' });
      expect(reports.map((r) => r.failures).flat(), log.slice(-4000)).toEqual([]);
      expect(reports, log.slice(-2000)).toHaveLength(n);
      for (const r of reports) expect(r.checks).toBeGreaterThan(30);
      expect(ok).toBe(true);
    });
  });
}

for (const n of [2, 4]) {
  const place = placement(n);
  describe.skipIf(!place.runs)(`normal dispatches back to back, on ${place.title}`, { timeout: 600_000 }, () => {
    it('a rank a dispatch ahead of a peer does not replace counts the peer has not read (notify-ack)', async () => {
      const { ok, reports, log } = await runWorkers('ep-back-to-back.mjs', n, place.env);
      expect(reports.map((r) => r.failures).flat(), log.slice(-4000)).toEqual([]);
      expect(reports, log.slice(-2000)).toHaveLength(n);
      expect(ok).toBe(true);
    });
  });
}

for (const n of [1, 2, 4]) {
  const place = placement(n);
  // Ranks sharing a GPU take turns on it: the time grows with n.
  const timeout = Math.max(600_000, SOAK_ITERATIONS * 40 * n);
  describe.skipIf(!place.runs)(`long runs on ${place.title}`, { timeout }, () => {
    it(`${SOAK_ITERATIONS} iterations of each mode keep device memory, RSS and the heap flat`, async () => {
      const env = { ...place.env, WIDEEP_SOAK_ITERATIONS: String(SOAK_ITERATIONS), NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --expose-gc` };
      const { ok, reports, log } = await runWorkers('ep-soak.mjs', n, env);
      expect(reports.map((r) => r.failures).flat(), log.slice(-4000)).toEqual([]);
      expect(reports, log.slice(-2000)).toHaveLength(n);
      for (const r of reports) expect(Object.keys(r.measures as object)).toHaveLength(4);
      expect(ok).toBe(true);
    });
  });
}

const killed = placement(4);
describe.skipIf(!killed.runs)(`a rank killed mid-dispatch, on ${killed.title}`, { timeout: 300_000 }, () => {
  it('leaves every survivor a typed error (ERR_TIMEOUT, ERR_PEER or a CUDA error) within the timeout and a margin', async () => {
    // The survivors hold the launcher's SIGTERM until they have reported.
    const { ok, reports, log } = await runWorkers('ep-kill.mjs', 4, killed.env, { graceMs: 60_000 });
    expect(reports.map((r) => r.failures).flat(), log.slice(-4000)).toEqual([]);
    expect(reports.map((r) => r.rank).sort(), log.slice(-2000)).toEqual([0, 1, 2]);
    expect(log).toMatch(/rank 3 .*SIGKILL/);
    expect(ok).toBe(false);
  });
});
