import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { parseRankReport, placement, runOnRanks } from '../../../src/testing/ranks.js';

describe('wideep/testing: ranks', () => {
  it('parses a rank report line and ignores anything else', () => {
    expect(parseRankReport('[rank 3] {"rank":3,"checks":5,"failures":[]}')).toEqual({ rank: 3, checks: 5, failures: [] });
    expect(parseRankReport('[rank 3] hello')).toBeUndefined();
    expect(parseRankReport('{"rank":3}')).toBeUndefined();
  });

  it('places ranks nowhere without GPUs, and says why', () => {
    const p = placement(2);
    if (p.run) return expect(p.reason).toMatch(/GPU/); // a machine with GPUs
    expect(p).toEqual({ run: false, env: {}, reason: expect.stringMatching(/^needs 2 GPUs, 0 visible$/) });
  });

  it('runs a worker on 3 real processes and collects each rank report', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wideep-ranks-'));
    const script = join(dir, 'worker.mjs');
    writeFileSync(script, 'const r = Number(process.env.RANK);\nconsole.log(JSON.stringify({ rank: r, checks: r + 1, failures: r === 1 ? ["rank 1 differs"] : [] }));\n');
    const { ok, reports } = await runOnRanks(script, 3);
    expect(ok).toBe(true);
    expect(reports.sort((a, b) => a.rank - b.rank)).toEqual([
      { rank: 0, checks: 1, failures: [] },
      { rank: 1, checks: 2, failures: ['rank 1 differs'] },
      { rank: 2, checks: 3, failures: [] },
    ]);
  });

  it('passes args to the script', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wideep-ranks-'));
    const script = join(dir, 'worker.mjs');
    writeFileSync(script, 'console.log(JSON.stringify({ rank: Number(process.env.RANK), checks: 0, failures: [], args: process.argv.slice(2) }));\n');
    const { reports } = await runOnRanks(script, 2, {}, { args: ['--tokens', '8'] });
    expect(reports.map((r) => r.args)).toEqual([['--tokens', '8'], ['--tokens', '8']]);
  });
});
