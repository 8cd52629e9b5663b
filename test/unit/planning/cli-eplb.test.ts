import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { command } from '../../../src/cli/commands/eplb.js';
import type { CliIo } from '../../../src/cli/command.js';

const WEIGHTS = fileURLToPath(new URL('../../fixtures/planning/eplb-readme-weights.json', import.meta.url));

async function run(args: string): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (t) => out.push(t), err: (t) => err.push(t) };
  const code = await command.run(args.split(' '), io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('wideep eplb', () => {
  it("prints exactly {phy2log, log2phy, logcnt} for DeepSeek's README example", async () => {
    const r = await run(`--weights ${WEIGHTS} --replicas 16 --groups 4 --nodes 2 --gpus 8 --json`);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out);
    expect(Object.keys(out)).toEqual(['phy2log', 'log2phy', 'logcnt']);
    expect(out.phy2log).toEqual([
      [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
      [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
    ]);
    expect(out.log2phy[0]).toHaveLength(12);
    expect(out.log2phy[0][0]).toHaveLength(5);
    expect(out.logcnt[1]).toEqual([1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1]);
  });

  it('prints per-GPU rows and balancedness without --json', async () => {
    const r = await run(`--weights ${WEIGHTS} --replicas 16 --groups 4 --nodes 2 --gpus 8`);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/hierarchical policy: 2 layers × 12 experts -> 16 slots on 8 GPUs/);
    expect(r.out).toMatch(/layer 0: balancedness 0\.\d+ -> 0\.\d+/);
    expect(r.out).toMatch(/GPU 0: {2}5 {2}6/);
  });

  it('refuses bad arguments with exit 2', async () => {
    expect((await run('--replicas 16 --gpus 8')).err).toMatch(/--weights is required/);
    expect((await run(`--weights ${WEIGHTS} --gpus 8`)).err).toMatch(/--replicas is required/);
    const notMultiple = await run(`--weights ${WEIGHTS} --replicas 15 --gpus 8`);
    expect(notMultiple.code).toBe(2);
    expect(notMultiple.err).toMatch(/numReplicas \(--replicas\) 15: must be a multiple of numGpus \(--gpus 8\)/);
    expect((await run(`--weights ${WEIGHTS} --replicas 16 --gpus x`)).err).toMatch(/--gpus x: must be an integer >= 1/);
    expect((await run(`--weights ${WEIGHTS} --replicas 16 --gpus 8 --bogus`)).code).toBe(2);

    const dir = mkdtempSync(join(tmpdir(), 'wideep-eplb-'));
    writeFileSync(join(dir, 'ragged.json'), '[[1, 2], [3]]');
    const ragged = await run(`--weights ${join(dir, 'ragged.json')} --replicas 2 --gpus 1`);
    expect(ragged.code).toBe(2);
    expect(ragged.err).toMatch(/row 1 has 1 entries, expected 2/);
  });
});
