import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import type { ParallelOptions } from '../../../src/planning/options.js';
import { parseIntFlag, parseNumberFlag, parseSglangArgs } from '../../../src/planning/sglang-args.js';

/** SGLang's WideEP example (64 GPUs, DP attention, DeepEP, TBO, EPLB), as camelCase options. */
const WIDE_EP = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../fixtures/planning/wide-ep-options.json', import.meta.url)), 'utf8'),
) as ParallelOptions;

describe('parseSglangArgs', () => {
  it('parses the WideEP example flags into camelCase options', () => {
    const argv = '--tp 64 --dp-size 64 --enable-dp-attention --ep-size 64 --moe-a2a-backend deepep --deepep-mode low_latency --enable-two-batch-overlap --enable-eplb'.split(' ');
    expect(parseSglangArgs(argv).options).toEqual(WIDE_EP);
  });

  it('accepts SGLang aliases and --flag=value', () => {
    const { options } = parseSglangArgs(['--tp-size=8', '--dp', '2', '--expert-parallel-size', '8', '--pp', '1', '--nccl-init-addr', 'h:1']);
    expect(options).toEqual({ tp: 8, dpSize: 2, epSize: 8, ppSize: 1, distInitAddr: 'h:1' });
  });

  it('parses every option kind', () => {
    const { options } = parseSglangArgs([
      '--tbo-token-distribution-threshold', '0.4',
      '--mem-fraction-static', '0.85',
      '--ep-num-redundant-experts', '32',
      '--eplb-rebalance-num-iterations', '500',
      '--max-running-requests', '4096',
      '--num-max-dispatch-tokens-per-rank', '256',
      '--moe-dp-size', '2',
      '--nnodes', '2',
      '--node-rank', '1',
      '--gpus', '16',
      '--gpus-per-node', '8',
    ]);
    expect(options).toEqual({
      tboTokenDistributionThreshold: 0.4,
      memFractionStatic: 0.85,
      epNumRedundantExperts: 32,
      eplbRebalanceNumIterations: 500,
      maxRunningRequests: 4096,
      numMaxDispatchTokensPerRank: 256,
      moeDpSize: 2,
      nnodes: 2,
      nodeRank: 1,
      worldSize: 16,
      gpusPerNode: 8,
    });
  });

  it('translates the deprecated --enable-deepep-moe with a warning', () => {
    const r = parseSglangArgs(['--enable-deepep-moe']);
    expect(r.options.moeA2aBackend).toBe('deepep');
    expect(r.warnings[0]).toMatch(/deprecated/);
    expect(() => parseSglangArgs(['--enable-deepep-moe', '--moe-a2a-backend', 'none'])).toThrow(/conflicts with --moe-a2a-backend none/);
  });

  it('refuses two spellings of one option with different values', () => {
    expect(() => parseSglangArgs(['--tp', '8', '--tp-size', '16'])).toThrow(/--tp-size 16: conflicts with --tp 8/);
    expect(parseSglangArgs(['--tp', '8', '--tp-size', '8']).options.tp).toBe(8);
  });

  it('names the flag and value of a non-number', () => {
    expect(() => parseSglangArgs(['--tp', 'abc'])).toThrow(/--tp abc: must be an integer >= 0/);
    expect(() => parseSglangArgs(['--tp', '8.5'])).toThrow(/--tp 8.5: must be an integer/);
    expect(() => parseSglangArgs(['--mem-fraction-static', 'x'])).toThrow(/--mem-fraction-static x: must be a number/);
  });

  it('refuses unknown flags', () => {
    expect(() => parseSglangArgs(['--tensor-parallel', '8'])).toThrow(expect.objectContaining({ code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' }));
  });

  it('hands back the caller’s extra options and positionals', () => {
    const r = parseSglangArgs(['--tp', '2', '--json', '--model', 'm', 'extra'], { json: { type: 'boolean' }, model: { type: 'string' } });
    expect(r.extra).toEqual({ json: true, model: 'm' });
    expect(r.positionals).toEqual(['extra']);
    expect(() => parseSglangArgs([], { tp: { type: 'string' } })).toThrow(/already an SGLang flag/);
  });
});

describe('flag value parsers', () => {
  it('parse integers and numbers strictly', () => {
    expect(parseIntFlag('--x', '12', 1)).toBe(12);
    expect(() => parseIntFlag('--x', '0', 1)).toThrow(/--x 0: must be an integer >= 1/);
    expect(() => parseIntFlag('--x', '', 0)).toThrow(/--x : must be an integer/);
    expect(parseNumberFlag('--y', '1e3')).toBe(1000);
    expect(() => parseNumberFlag('--y', '')).toThrow(/--y : must be a number/);
  });
});
