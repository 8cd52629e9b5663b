import { describe, expect, it } from 'vitest';

import { ANCHOR_SHAPES } from '../../../src/cli/bench/ep-anchors.js';
import { command, compareWithDeepEp, renderEpTable, summarise, type EpBenchReport } from '../../../src/cli/bench/ep.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const row = { gbps: 300, kernelUs: 40 };
const NORMAL = ANCHOR_SHAPES.normal;
const LL = ANCHOR_SHAPES['low-latency'];

describe('bench ep: DeepEP comparison by rank count', () => {
  it('at 4 ranks uses the same-machine figures with the issue goals', () => {
    expect(compareWithDeepEp('normal', 'dispatch-bf16', 24, row, 4, NORMAL)).toEqual({ value: 261, unit: 'GB/s', ratio: 1.149, goal: 1.4 });
    expect(compareWithDeepEp('normal', 'combine-bf16', 24, row, 4, NORMAL)).toEqual({ value: 355, unit: 'GB/s', ratio: 0.845, goal: 1.2 });
    expect(compareWithDeepEp('normal', 'dispatch-fp8-cached', 48, row, 4, NORMAL)).toEqual({ value: 371, unit: 'GB/s', ratio: 0.809 });
    expect(compareWithDeepEp('low-latency', 'll-dispatch', undefined, row, 4, LL)).toEqual({ value: 33, unit: 'us', ratio: 1.212, goal: 0.7 });
    expect(compareWithDeepEp('normal', 'dispatch-bf16', 128, row, 4, NORMAL)).toBeUndefined();
  });

  it("at 8 ranks uses DeepEP's published EP8 figures, without goals", () => {
    expect(compareWithDeepEp('normal', 'dispatch-fp8', 24, row, 8, NORMAL)).toEqual({ value: 153, unit: 'GB/s', ratio: 1.961 });
    expect(compareWithDeepEp('normal', 'combine-bf16', 24, row, 8, NORMAL)).toEqual({ value: 158, unit: 'GB/s', ratio: 1.899 });
    expect(compareWithDeepEp('normal', 'dispatch-bf16', 24, row, 8, NORMAL)).toBeUndefined();
    expect(compareWithDeepEp('low-latency', 'll-combine', undefined, row, 8, LL)).toEqual({ value: 114, unit: 'us', ratio: 0.351 });
  });

  it('has no figures for a run of another shape than DeepEP measured', () => {
    expect(compareWithDeepEp('low-latency', 'll-dispatch', undefined, row, 4, { ...LL, tokens: 256 })).toBeUndefined();
    expect(compareWithDeepEp('normal', 'dispatch-bf16', 24, row, 4, { ...NORMAL, hidden: 4096 })).toBeUndefined();
    expect(compareWithDeepEp('normal', 'combine-bf16', 24, row, 4, { ...NORMAL, experts: 64 })).toBeUndefined();
  });

  it('has no figures at other rank counts', () => {
    expect(compareWithDeepEp('normal', 'dispatch-bf16', 24, row, 2, NORMAL)).toBeUndefined();
    expect(compareWithDeepEp('low-latency', 'll-dispatch', undefined, row, 2, LL)).toBeUndefined();
  });
});

describe('bench ep: table', () => {
  it('shows no bandwidth for a row without bytes, and no kernel time for a host-only row', () => {
    const report = {
      suite: 'ep',
      mode: 'low-latency',
      worldSize: 2,
      config: { tokens: 128, hidden: 7168, topk: 8, experts: 256 },
      rows: [
        { routing: 'uniform', op: 'll-dispatch', kernelUs: 31.3, wallUs: 90, gbps: 253.7, perRank: [] },
        { routing: 'uniform', op: 'event-floor', kernelUs: 6.2, wallUs: 9, gbps: 0, perRank: [] },
        { routing: 'uniform', op: 'launch-floor-host', kernelUs: NaN, wallUs: 4.5, gbps: NaN, perRank: [] },
      ],
    } as unknown as EpBenchReport;
    const lines = renderEpTable(report).split('\n');
    const cells = (op: string) => lines.find((l) => l.includes(op))!.trim().split(/\s{2,}/);
    expect(cells('ll-dispatch')).toEqual(['uniform', '-', 'll-dispatch', '31.3', '254', '-', '-', '-', '90.0']);
    expect(cells('event-floor')).toEqual(['uniform', '-', 'event-floor', '6.2', '-', '-', '-', '-', '9.0']);
    expect(cells('launch-floor-host')).toEqual(['uniform', '-', 'launch-floor-host', '-', '-', '-', '-', '-', '4.5']);
  });
});

describe('bench ep: a --send-sms sweep', () => {
  const samples = (us: number) => ({ kernelUs: [us, us, us], wallUs: [us + 5, us + 5, us + 5] });
  const rank = (r: number) => ({
    rank: r,
    device: r,
    rows: [
      { routing: 'uniform' as const, numSms: 24, op: 'dispatch-bf16', bytes: 1e8, samples: samples(250) },
      { routing: 'uniform' as const, numSms: 24, sendSms: 12, op: 'combine-bf16', bytes: 1e8, samples: samples(400 + r) },
      { routing: 'uniform' as const, numSms: 24, sendSms: 16, op: 'combine-bf16', bytes: 1e8, samples: samples(300 + r) },
    ],
  });

  it('keeps one combine row per sending share, each with its share', () => {
    const rows = summarise('normal', [rank(0), rank(1)], NORMAL);
    const combines = rows.filter((r) => r.op === 'combine-bf16');
    expect(combines.map((r) => [r.sendSms, r.kernelUs, r.perRank.length])).toEqual([
      [12, 400.5, 2],
      [16, 300.5, 2],
    ]);
    expect(rows.find((r) => r.op === 'dispatch-bf16')!.sendSms).toBeUndefined();
  });

  it('shows the share beside the budget', () => {
    const report = {
      suite: 'ep',
      mode: 'normal',
      worldSize: 2,
      config: { tokens: 4096, hidden: 7168, topk: 8, experts: 256 },
      rows: summarise('normal', [rank(0), rank(1)], NORMAL),
    } as unknown as EpBenchReport;
    const lines = renderEpTable(report).split('\n');
    expect(lines.filter((l) => l.includes('combine-bf16')).map((l) => l.trim().split(/\s{2,}/)[1])).toEqual(['24 (12 send)', '24 (16 send)']);
  });
});

describe('bench ep: arguments', () => {
  const io = { out: () => {}, err: () => {} };
  it('refuses bad options before looking for GPUs', async () => {
    await expectWideepError(command.run(['--mode', 'fast'], io), 'ERR_INVALID_ARG', '--mode: expected normal or low-latency');
    await expectWideepError(command.run(['--mode', 'normal', '--routing', 'skewed'], io), 'ERR_INVALID_ARG', '--routing');
    await expectWideepError(command.run(['--mode', 'normal', '--send-sms', '0'], io), 'ERR_INVALID_ARG', '--send-sms');
    await expectWideepError(
      command.run(['--mode', 'normal', '--num-sms', '24,12', '--send-sms', '12'], io),
      'ERR_INVALID_ARG',
      '--send-sms: expected fewer than every --num-sms (24,12), got 12',
    );
    await expectWideepError(
      command.run(['--mode', 'normal', '--send-sms', '8,16,24'], io),
      'ERR_INVALID_ARG',
      '--send-sms: expected fewer than every --num-sms (24), got 24',
    );
    await expectWideepError(command.run(['--mode', 'normal', '--send-sms', '8,x'], io), 'ERR_INVALID_ARG', '--send-sms');
  });
});
