/**
 * The MoE layer on GPUs (router, EP dispatch, grouped experts, combine,
 * shared expert) against the same layer on the host, in normal and
 * low-latency mode, with a rank that has no tokens in one normal step: at one
 * rank, and at 2 and 4 ranks on GPUs or sharing GPU 0.
 */
import { describe, expect, it } from 'vitest';

import { gpus, shareGpu, skipReason } from './gpu-env.js';
import { runWorkers } from './run-workers.js';

for (const n of [1, 2, 4]) {
  const shared = gpus < n && shareGpu;
  const title = shared ? `MoE layer on ${n} ranks sharing GPU 0` : `MoE layer on ${n} GPU${n === 1 ? '' : 's'} (${skipReason(n)})`;
  describe.skipIf(gpus < n && !shared)(title, { timeout: 300_000 }, () => {
    it('matches the host layer in normal and low-latency mode', async () => {
      const { ok, reports, log } = await runWorkers('moe-layer.mjs', n, shared ? { WIDEEP_DEVICE: '0' } : {});
      expect(reports.map((r) => r.failures).flat(), log.slice(-4000)).toEqual([]);
      expect(reports, log.slice(-2000)).toHaveLength(n);
      for (const r of reports) {
        expect(r.checks).toBeGreaterThan(1000);
        // Near-ties are rare with random weights; many would hide a routing bug.
        expect(r.nearTies as number).toBeLessThan((r.tokens as number) / 10);
      }
      expect(ok).toBe(true);
    });
  });
}
