/**
 * EP across nodes on cuda (docs/architecture.md "EP across nodes"), against
 * the cpu backend's hierarchical path, fresh random inputs each run, outputs
 * poisoned first:
 * (a) one rank: the network leg's kernels (node layout, pack, unpack, the
 *     origin's reduce);
 * (b) two ranks as one node of a simulated two-node world (sharing GPU 0
 *     with WIDEEP_TEST_SHARE_GPU=1): the intranode forward of received
 *     blocks built from the cpu reference;
 * (c) four ranks as two nodes of two, NCCL forced onto its network
 *     transport: the whole path. NCCL refuses two ranks on one GPU, so it
 *     needs four distinct GPUs and skips otherwise.
 */
import { describe, expect, it } from 'vitest';

import { gpus, placement } from './gpu-env.js';
import { runWorkers } from './run-workers.js';

const one = placement(1);
const node = placement(2);
const POISON = { WIDEEP_POISON_OUTPUTS: '1' };

function expectClean({ ok, reports, log }: Awaited<ReturnType<typeof runWorkers>>, n: number, minChecks: number) {
  expect(reports.map((r) => r.failures).flat(), log.slice(-4000)).toEqual([]);
  expect(reports, log.slice(-2000)).toHaveLength(n);
  for (const r of reports) expect(r.checks).toBeGreaterThan(minChecks);
  expect(ok).toBe(true);
}

describe.skipIf(!one.runs)(`EP across nodes, the network leg's kernels on ${one.title}`, { timeout: 60_000 }, () => {
  it('node layout, pack, unpack and reduce match the cpu reference', async () => {
    expectClean(await runWorkers('ep-nodes-kernels.mjs', 1, { ...one.env, ...POISON }), 1, 50);
  });
});

describe.skipIf(!node.runs)(`EP across nodes, the intranode forward on ${node.title}`, { timeout: 60_000 }, () => {
  it('the forward of blocks built from the cpu reference gives its rows exactly, and its node partials', async () => {
    expectClean(await runWorkers('ep-nodes-forward.mjs', 2, { ...node.env, ...POISON }), 2, 20);
  });
});

const FULL = gpus >= 4 ? '4 GPUs as 2 nodes of 2' : `4 GPUs as 2 nodes of 2 (needs 4 distinct GPUs, ${gpus} visible: NCCL refuses two ranks on one GPU)`;
describe.skipIf(gpus < 4)(`EP across nodes, the whole path on ${FULL}`, { timeout: 120_000 }, () => {
  it('dispatch, cached dispatch and combine match the cpu backend; bad ids fail every rank', async () => {
    expectClean(await runWorkers('ep-nodes-full.mjs', 4, { ...POISON, NCCL_P2P_DISABLE: '1', NCCL_SHM_DISABLE: '1' }), 4, 20);
  });
});
