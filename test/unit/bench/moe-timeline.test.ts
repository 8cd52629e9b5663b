import { describe, expect, it } from 'vitest';

import { medianStages, stageTotals, type StageTimes } from '../../../src/cli/bench/moe-stages.js';
import { renderTimelineSvg } from '../../../src/cli/bench/moe-svg.js';
import type { TimelineSpan } from '../../../src/cuda/timeline.js';

const span = (label: string, lane: number, startUs: number, endUs: number, hostUs = 5): TimelineSpan => ({ label, lane, startUs, endUs, hostUs });

// A two-batch-overlap prefill step: micro-batch 1's dispatch beside micro-batch 0's experts.
const TBO: TimelineSpan[] = [
  span('router', 0, 0, 50),
  span('shared', 0, 50, 150),
  span('dispatch', 0, 150, 250),
  span('experts', 0, 250, 1250),
  span('router', 1, 260, 300),
  span('dispatch', 1, 300, 420),
  span('shared', 0, 1250, 1300),
  span('combine', 0, 1300, 1400),
  span('experts', 1, 1260, 2200),
  span('combine', 1, 2200, 2300, 40),
];

describe('bench moe: stage breakdown', () => {
  it('sums each label over a step (the shared expert runs in two parts, and per stream)', () => {
    expect(stageTotals(TBO)).toEqual({ router: 90, shared: 150, dispatch: 220, experts: 1940, combine: 200 });
    expect(stageTotals([])).toEqual({});
  });

  it('sums the host enqueue times per label when asked', () => {
    expect(stageTotals(TBO, 'host')).toEqual({ router: 10, shared: 10, dispatch: 10, experts: 10, combine: 45 });
  });

  it('takes the median of each label over runs, in stage order, a missing label counting 0', () => {
    const runs: StageTimes[] = [
      { experts: 100, router: 10, 'dispatch-recv': 3 },
      { experts: 300, router: 30 },
      { router: 20, experts: 200, 'new-stage': 7 },
    ];
    const m = medianStages(runs);
    expect(m).toEqual({ router: 20, 'dispatch-recv': 0, experts: 200, 'new-stage': 0 });
    expect(Object.keys(m)).toEqual(['router', 'dispatch-recv', 'experts', 'new-stage']);
  });
});

describe('bench moe: timeline SVG', () => {
  const svg = renderTimelineSvg(TBO, 'prefill <TBO> & "overlap"', 'one H100');
  const rects = [...svg.matchAll(/<rect class="span" data-label="([^"]+)" data-lane="(\d)" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"/g)];

  it('draws one bar per span, in one lane per stream', () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(rects).toHaveLength(TBO.length);
    expect(svg).toContain('>stream 0<');
    expect(svg).toContain('>stream 1<');
    expect(svg).not.toContain('>stream 2<');
    const y = (lane: string) => new Set(rects.filter((r) => r[2] === lane).map((r) => r[4]));
    expect(y('0').size).toBe(1);
    expect(y('1').size).toBe(1);
    expect([...y('1')][0]).not.toBe([...y('0')][0]);
  });

  it('places bars on the time axis: later and longer spans further right and wider', () => {
    const bar = (label: string, lane: string) => rects.find((r) => r[1] === label && r[2] === lane)!;
    const [x0, w0] = [Number(bar('experts', '0')[3]), Number(bar('experts', '0')[5])];
    const [x1] = [Number(bar('dispatch', '1')[3])];
    // Micro-batch 1's dispatch starts while micro-batch 0's experts run: overlap shows.
    expect(x1).toBeGreaterThan(x0);
    expect(x1).toBeLessThan(x0 + w0);
    expect(w0).toBeGreaterThan(Number(bar('router', '0')[5]) * 10);
    // The axis reaches past the last span's end.
    expect(svg).toMatch(/>2500</);
  });

  it('escapes text, names each stage once in the legend and gives each bar a tooltip', () => {
    expect(svg).toContain('prefill &lt;TBO&gt; &amp; &quot;overlap&quot;');
    expect(svg.match(/<title>/g)).toHaveLength(TBO.length);
    expect(svg).toContain('<title>experts, stream 1: 1260.0–2200.0 µs (940.0 µs)</title>');
    const legend = [...svg.matchAll(/dominant-baseline="middle">(router|shared|dispatch|experts|combine)</g)].map((m) => m[1]);
    expect(legend.sort()).toEqual(['combine', 'dispatch', 'experts', 'router', 'shared']);
  });

  it('draws an empty frame for a timeline without spans', () => {
    const empty = renderTimelineSvg([], 'nothing');
    expect(empty).toContain('>stream 0<');
    expect(empty).not.toContain('class="span"');
  });
});
