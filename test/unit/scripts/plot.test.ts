/**
 * scripts/bench/plot.mjs, run as a user runs it: benchmark reports shaped by
 * the bench commands' own types go in, one SVG comes out, and its series,
 * DeepEP marks and same-run baselines are read back from the markup.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import type { EpBenchReport, EpBenchRow } from '../../../src/cli/bench/ep.js';
import type { CaseResult, NcclBenchReport } from '../../../src/cli/bench/nccl-metrics.js';

const SCRIPT = fileURLToPath(new URL('../../../scripts/bench/plot.mjs', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'wideep-plot-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function write(value: unknown): string {
  const file = join(dir, `report${files++}.json`);
  writeFileSync(file, JSON.stringify(value));
  return file;
}

function plot(...inputs: string[]): { status: number | null; svg: string; stderr: string } {
  const out = join(dir, `plot${files++}.svg`);
  const r = spawnSync(process.execPath, [SCRIPT, '-o', out, ...inputs], { encoding: 'utf8' });
  return { status: r.status, svg: r.status === 0 ? readFileSync(out, 'utf8') : '', stderr: r.stderr };
}

/** The panels of an SVG, each with its series (name → [x, y] points), DeepEP marks and reference lines. */
function panels(svg: string) {
  return svg
    .split('<g class="panel"')
    .slice(1)
    .map((text) => {
      const title = /data-title="([^"]*)"/.exec(text)![1];
      const series = new Map<string, number[][]>();
      for (const m of text.matchAll(/<g class="series" data-name="([^"]*)"[^>]*>([\s\S]*?)<\/g>/g)) {
        series.set(m[1]!, [...m[2]!.matchAll(/data-x="([^"]*)" data-y="([^"]*)"/g)].map((p) => [Number(p[1]), Number(p[2])]));
      }
      const anchors = [...text.matchAll(/class="anchor" data-name="([^"]*)" data-x="([^"]*)" data-y="([^"]*)"/g)].map((m) => ({
        name: m[1],
        x: Number(m[2]),
        y: Number(m[3]),
      }));
      const references = [...text.matchAll(/class="reference" data-name="([^"]*)" data-y="([^"]*)"/g)].map((m) => ({ name: m[1], y: Number(m[2]) }));
      return { title, series, anchors, references };
    });
}

function epRow(row: Partial<EpBenchRow> & Pick<EpBenchRow, 'op' | 'routing'>): EpBenchRow {
  return { kernelUs: 100, wallUs: 120, gbps: 0, perRank: [], ...row };
}

function epReport(mode: EpBenchReport['mode'], tokens: number, rows: EpBenchRow[]): EpBenchReport {
  return {
    suite: 'ep',
    mode,
    worldSize: 4,
    config: {
      mode,
      tokens,
      hidden: 7168,
      topk: 8,
      experts: 256,
      routings: ['uniform'],
      numSms: [24, 48],
      iters: 30,
      warmup: 5,
      graphReplays: 20,
      baseline: true,
      seed: 1,
    },
    deepepSource: 'DeepEP V1 on the same 4xH200 machine type',
    rows,
  };
}

describe('plot.mjs: normal mode', () => {
  const report = epReport('normal', 4096, [
    epRow({ routing: 'uniform', numSms: 24, op: 'dispatch-bf16', gbps: 384, deepep: { value: 261, unit: 'GB/s', ratio: 1.47 } }),
    epRow({ routing: 'uniform', numSms: 24, op: 'dispatch-bf16-cached', gbps: 410, deepep: { value: 261, unit: 'GB/s', ratio: 1.57 } }),
    epRow({ routing: 'uniform', numSms: 24, op: 'combine-bf16', gbps: 278, deepep: { value: 355, unit: 'GB/s', ratio: 0.78 } }),
    epRow({ routing: 'uniform', numSms: 48, op: 'dispatch-bf16', gbps: 394, deepep: { value: 385, unit: 'GB/s', ratio: 1.02 } }),
    epRow({ routing: 'uniform', numSms: 128, op: 'dispatch-bf16', gbps: 391 }),
    epRow({ routing: 'uniform', numSms: 24, sendSms: 12, op: 'combine-bf16', gbps: 300 }),
    epRow({ routing: 'uniform', op: 'nccl-dispatch', gbps: 330 }),
    epRow({ routing: 'zipf', numSms: 24, op: 'dispatch-bf16', gbps: 363 }),
  ]);
  const r = plot(write(report));

  it('draws bandwidth against SM budget, one series per op and one panel per routing', () => {
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const [uniform, zipf] = panels(r.svg);
    expect(uniform!.title).toBe('Normal mode, uniform routing');
    expect([...uniform!.series.keys()]).toEqual(['dispatch-bf16', 'dispatch-bf16-cached', 'combine-bf16', 'combine-bf16 (12 send SMs)']);
    expect(uniform!.series.get('dispatch-bf16')).toEqual([
      [24, 384],
      [48, 394],
      [128, 391],
    ]);
    expect(zipf!.title).toBe('Normal mode, zipf routing');
    expect(zipf!.series.get('dispatch-bf16')).toEqual([[24, 363]]);
  });

  it("marks DeepEP's figures where the report carries them, once per figure", () => {
    const [uniform, zipf] = panels(r.svg);
    expect(uniform!.anchors).toEqual([
      { name: 'DeepEP dispatch-bf16', x: 24, y: 261 },
      { name: 'DeepEP combine-bf16', x: 24, y: 355 },
      { name: 'DeepEP dispatch-bf16', x: 48, y: 385 },
    ]);
    expect(zipf!.anchors).toEqual([]);
  });

  it('draws the NCCL baseline of the same run as a line, not as a series', () => {
    const [uniform] = panels(r.svg);
    expect(uniform!.references).toEqual([{ name: 'nccl-dispatch', y: 330 }]);
    expect(uniform!.series.has('nccl-dispatch')).toBe(false);
  });
});

describe('plot.mjs: low-latency mode', () => {
  const rows = (dispatchUs: number, deepep: boolean) => [
    epRow({ routing: 'uniform', op: 'll-dispatch', kernelUs: dispatchUs, ...(deepep ? { deepep: { value: 33, unit: 'us', ratio: 1.2 } } : {}) }),
    epRow({ routing: 'uniform', op: 'll-combine', kernelUs: dispatchUs + 10 }),
    // Host-only rows have no kernel time (NaN, which JSON writes as null).
    epRow({ routing: 'uniform', op: 'll-dispatch-host', kernelUs: NaN, wallUs: 18 }),
  ];
  const r = plot(write(epReport('low-latency', 64, rows(30, false))), write(epReport('low-latency', 128, rows(41, true))));

  it('draws kernel time against tokens per rank, across reports', () => {
    expect(r.status).toBe(0);
    const all = panels(r.svg);
    expect(all).toHaveLength(1);
    expect(all[0]!.series.get('ll-dispatch')).toEqual([
      [64, 30],
      [128, 41],
    ]);
    expect(all[0]!.series.get('ll-combine')).toEqual([
      [64, 40],
      [128, 51],
    ]);
    expect(all[0]!.series.has('ll-dispatch-host')).toBe(false);
    expect(all[0]!.anchors).toEqual([{ name: 'DeepEP ll-dispatch', x: 128, y: 33 }]);
  });
});

describe('plot.mjs: nccl', () => {
  const result = (op: CaseResult['op'], id: string, timeUs: number, extra: Partial<CaseResult>): CaseResult => ({
    id,
    op,
    label: id,
    dtype: 'bf16',
    warmup: 20,
    iters: 50,
    timeUs,
    perRankUs: [timeUs],
    ...extra,
  });
  const results = (scale: number) => [
    result('all-reduce', 'all_reduce_8MiB', 64, { bytes: 8 << 20, busbwGBs: 196 * scale }),
    result('all-reduce', 'all_reduce_512MiB', 2317, { bytes: 512 << 20, busbwGBs: 348 * scale }),
    result('all-to-all', 'all_to_all_128', 38.7 * scale, { rowsPerPeer: 128, hidden: 7168 }),
    result('all-to-all', 'all_to_all_4096', 600 * scale, { rowsPerPeer: 4096, hidden: 7168 }),
  ];
  const report: NcclBenchReport = {
    suite: 'nccl',
    worldSize: 4,
    gpus: ['NVIDIA H200', 'NVIDIA H200', 'NVIDIA H200', 'NVIDIA H200'],
    ncclVersion: '2.28.3',
    warmup: 20,
    iters: 50,
    results: results(1),
    torch: { available: true, torchVersion: '2.11', ncclVersion: '2.28.9', worldSize: 4, results: results(0.5) },
    ratios: {},
  };
  const r = plot(write(report));

  it('draws all-reduce bus bandwidth and all-to-all time, with PyTorch beside', () => {
    expect(r.status).toBe(0);
    const [allReduce, allToAll] = panels(r.svg);
    expect(allReduce!.title).toBe('NCCL all-reduce');
    expect(allReduce!.series.get('wideep')).toEqual([
      [8, 196],
      [512, 348],
    ]);
    expect(allReduce!.series.get('PyTorch (NCCL 2.28.9)')).toEqual([
      [8, 98],
      [512, 174],
    ]);
    expect(allToAll!.title).toBe('NCCL equal all-to-all');
    expect(allToAll!.series.get('wideep')).toEqual([
      [128, 38.7],
      [4096, 600],
    ]);
  });
});

describe('plot.mjs: the SVG', () => {
  it('is self-contained: no scripts, no links, no external resources, balanced groups', () => {
    const { svg } = plot(write(epReport('normal', 4096, [epRow({ routing: 'uniform', numSms: 24, op: 'dispatch-bf16', gbps: 384 })])));
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg.replace('xmlns="http://www.w3.org/2000/svg"', '')).not.toMatch(/href|<script|<image|url\(|https?:/);
    expect(svg.split('<g').length).toBe(svg.split('</g>').length);
  });

  it('escapes text taken from the report', () => {
    const { svg } = plot(write({ ...epReport('normal', 4096, [epRow({ routing: 'uniform', numSms: 24, op: 'a<b&"c"', gbps: 1 })]) }));
    expect(svg).toContain('data-name="a&lt;b&amp;&quot;c&quot;"');
    expect(svg).not.toContain('a<b');
  });
});

describe('plot.mjs: bad input', () => {
  it('names the file and exits 2 for something that is not a bench report', () => {
    const file = write({ suite: 'pytest', rows: [] });
    const r = plot(file);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`${file}: suite is "pytest"`);
  });

  it('exits 2 for a missing file, broken JSON or no file at all', () => {
    expect(plot(join(dir, 'missing.json')).status).toBe(2);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{"suite": ');
    const r = plot(broken);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('not valid JSON');
    expect(plot().status).toBe(2);
  });
});
