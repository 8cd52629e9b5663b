// An integration test of the examples, written as a user's would be: vitest
// plus wideep/testing. It runs workers on N ranks through the launcher (one
// GPU each, or sharing GPU 0 under WIDEEP_TEST_SHARE_GPU=1) and skips, with
// the reason in its title, where the GPUs are missing.
//
//   npx vitest run examples/moe-layer.test.mjs
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';
import { capabilities } from 'wideep';
import { placement, runOnRanks } from 'wideep/testing';

const here = (file) => fileURLToPath(new URL(file, import.meta.url));
const blas = capabilities().cublasLt;

for (const n of [1, 2, 4]) {
  const where = placement(n);
  const runs = where.run && blas.found;
  const why = where.run ? `cuBLASLt ${blas.found ? 'found' : `missing: ${blas.reason}`}` : where.reason;
  describe.skipIf(!runs)(`examples on ${n} rank${n === 1 ? '' : 's'} (${why})`, { timeout: 300_000 }, () => {
    it('the layer matches the host reference: prefill steps and a replayed decode graph, outputs poisoned', async () => {
      const seed = String(Date.now() % 1_000_000);
      const { ok, reports, log } = await runOnRanks(here('./moe-layer-check.mjs'), n, { ...where.env, SEED: seed });
      expect(reports.flatMap((r) => r.failures), `seed ${seed}\n${log.slice(-4000)}`).toEqual([]);
      expect(reports, log.slice(-2000)).toHaveLength(n);
      for (const r of reports) {
        expect(r.replays).toBe(3);
        expect(r.checks).toBeGreaterThan(10_000);
        // Near-ties are rare with random weights; many would hide a routing bug.
        expect(r.nearTies).toBeLessThan(r.tokens / 10);
      }
      expect(ok).toBe(true);
    });

    it('examples/moe-layer.mjs runs a narrow DeepSeek-V3 layer from SGLang flags, finite output', async () => {
      const flags = ['--tp', String(n), '--dp-size', String(n), '--enable-dp-attention', '--ep-num-redundant-experts', String(n), '--hidden', '1024', '--moe-intermediate', '256', '--tokens', '512'];
      const { ok, log } = await runOnRanks(here('./moe-layer.mjs'), n, where.env, { args: flags });
      expect(ok, log.slice(-4000)).toBe(true);
      expect(log.match(/output finite/g), log.slice(-4000)).toHaveLength(n);
    });

    it('examples/moe-layer.mjs with fp8 experts on the masked GEMM (--expert-dtype fp8 --expert-gemm masked), finite output', async () => {
      const flags = ['--tp', String(n), '--dp-size', String(n), '--enable-dp-attention', '--hidden', '1024', '--moe-intermediate', '512', '--tokens', '512', '--expert-dtype', 'fp8', '--expert-gemm', 'masked'];
      const { ok, log } = await runOnRanks(here('./moe-layer.mjs'), n, where.env, { args: flags });
      expect(ok, log.slice(-4000)).toBe(true);
      expect(log.match(/fp8e4m3 \(masked GEMMs\) experts in .* output finite/g), log.slice(-4000)).toHaveLength(n);
    });

    it('examples/custom-experts.mjs: a per-expert loop matches the built-in experts', async () => {
      const { ok, log } = await runOnRanks(here('./custom-experts.mjs'), n, where.env);
      expect(ok, log.slice(-4000)).toBe(true);
      expect(log.match(/within tolerance/g), log.slice(-4000)).toHaveLength(2 * n);
    });
  });
}
