/**
 * `wideep demo` on the cuda backend for real: the built CLI (dist/, as npm
 * runs it) at 1, 2 and 4 ranks, on GPUs of their own or sharing GPU 0
 * (WIDEEP_TEST_SHARE_GPU=1). It runs with the GPU suites (vitest.config.ts)
 * and skips, with the reason in its title, without them.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { capabilities } from '../../../src/capabilities.js';
import { demoBackend } from '../../../src/cli/demo/backend.js';
import { placement } from '../../../src/testing/ranks.js';

const cli = fileURLToPath(new URL('../../../bin/wideep.js', import.meta.url));
const backend = demoBackend(capabilities());

for (const n of [1, 2, 4]) {
  const where = placement(n);
  const runs = where.run && backend.backend === 'cuda';
  describe.skipIf(!runs)(`wideep demo on ${runs ? where.reason : `cuda (${where.run ? backend.reason : where.reason})`}`, { timeout: 300_000 }, () => {
    it('runs the layer on the GPUs and matches the host reference: prefill steps, replayed decode graph', async () => {
      const args = [cli, 'demo', '--json', '--ranks', String(n), ...(where.env.WIDEEP_DEVICE ? ['--share-gpu'] : [])];
      const { stdout, stderr } = await promisify(execFile)(process.execPath, args, { maxBuffer: 64 << 20 }).catch((e: { stdout: string; stderr: string }) => e);
      const s = JSON.parse(stdout);
      expect(s.comparison.failures, stderr.slice(-4000)).toEqual([]);
      expect(s).toMatchObject({ pass: true, backend: 'cuda', ranks: n });
      expect(s.steps.map((x: { kind: string }) => x.kind)).toEqual(['prefill', 'prefill', 'decode', 'decode', 'decode', 'decode']);
      expect(s.comparison.checks).toBeGreaterThan(n * 10_000);
      expect(s.comparison.nearTies).toBeLessThan(s.comparison.tokens / 10);
      expect(s.comparison.worstRatio).toBeLessThan(1);
    });
  });
}
