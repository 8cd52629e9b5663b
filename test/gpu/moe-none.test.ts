/**
 * The routed experts without token moves (--moe-a2a-backend none, the
 * baseline of the EP path) against the host layer, the attention-TP
 * scatter/gather around attention, and whole decoder-layer steps with an
 * attention-TP group (forwardDecoderLayer), and a rebalance moving fp8
 * weights and their scales between ranks: at one rank, and at 2 and
 * 4 ranks where as many GPUs are visible. NCCL refuses two ranks on one GPU,
 * so the multi-rank cases skip, saying so, on a one-GPU machine.
 */
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { placement, runOnRanks } from '../../src/testing/ranks.js';

const worker = fileURLToPath(new URL('./workers/moe-none.mjs', import.meta.url));

for (const n of [1, 2, 4]) {
  const where = placement(n, { canShare: false });
  const title = where.run ? where.reason : `${where.reason}; NCCL refuses two ranks on one GPU`;
  describe.skipIf(!where.run)(`routed experts without token moves on ${title}`, { timeout: 120_000 }, () => {
    it('all-gather, local experts, reduce-scatter match the host layer (with an idle rank, and fp8 experts); dpScatter/dpGather sum and restore tokens; decoder steps over an attention-TP group; fp8 weights and scales moved between ranks', async () => {
      const { ok, reports, log } = await runOnRanks(worker, n, where.env);
      expect(reports.map((r) => r.failures).flat(), log.slice(-4000)).toEqual([]);
      expect(reports, log.slice(-2000)).toHaveLength(n);
      for (const r of reports) expect(r.checks).toBeGreaterThan(1000);
      expect(ok).toBe(true);
    });
  });
}
