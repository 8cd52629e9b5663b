/**
 * The MoE layer on GPUs (router, EP dispatch, grouped experts, combine,
 * shared expert) against the same layer on the host: eager normal and
 * low-latency steps (a rank with no tokens in one), then with redundant
 * expert slots a decode step captured as a CUDA graph and replayed before and
 * after a rebalance; the same with fp8 experts (weights with 128x128 block
 * scales, fp8 tokens), their GEMMs on cuBLASLt and on wideep's masked
 * kernel. At one rank, and at 2 and 4 ranks on GPUs or sharing
 * GPU 0. It uses wideep/testing as a user's integration test would.
 */
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { placement, runOnRanks } from '../../src/testing/ranks.js';

const worker = fileURLToPath(new URL('./workers/moe-layer.mjs', import.meta.url));

for (const n of [1, 2, 4]) {
  const where = placement(n);
  describe.skipIf(!where.run)(`MoE layer on ${where.reason}`, { timeout: 300_000 }, () => {
    it('matches the host layer: eager normal and low-latency steps, a replayed decode graph, a rebalance between replays, bf16 and fp8 experts', async () => {
      const { ok, reports, log } = await runOnRanks(worker, n, where.env);
      expect(reports.map((r) => r.failures).flat(), log.slice(-4000)).toEqual([]);
      expect(reports, log.slice(-2000)).toHaveLength(n);
      for (const r of reports) {
        expect(r.checks).toBeGreaterThan(1000);
        // bf16: three decode-graph replays before the rebalance and three after; fp8: two and two with
        // cuBLASLt's GEMMs, and two and two with the masked kernel. The rebalances moved weights.
        expect(r.replays).toBe(14);
        expect(r.moves as number).toBeGreaterThan(0);
        // Near-ties are rare with random weights; many would hide a routing bug.
        expect(r.nearTies as number).toBeLessThan((r.tokens as number) / 10);
      }
      expect(ok).toBe(true);
    });
  });
}
