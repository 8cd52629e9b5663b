import { describe, expect, it } from 'vitest';

import type { CliIo } from '../../../src/cli/command.js';
import { command } from '../../../src/cli/commands/plan.js';
import { epCallsOf } from '../../../src/planning/ep-path.js';

async function planJson(args: string): Promise<{ phase: string; mode: string; epCalls?: unknown }[]> {
  const out: string[] = [];
  const io: CliIo = { out: (t) => out.push(t), err: () => {} };
  expect(await command.run(args.split(' '), io)).toBe(0);
  return JSON.parse(out.join('\n')).communication.scenarios;
}

describe('the EP path a plan implies', () => {
  it('is hierarchical for normal mode over several nodes, flat in one node or in low-latency mode', () => {
    expect(epCallsOf('normal', 32, 8)).toEqual({ dispatch: 'dispatch', combine: 'combine', path: 'hierarchical', nodes: 4 });
    expect(epCallsOf('normal', 8, 8)).toEqual({ dispatch: 'dispatch', combine: 'combine', path: 'flat', nodes: 1 });
    expect(epCallsOf('low_latency', 32, 8)).toEqual({ dispatch: 'lowLatencyDispatch', combine: 'lowLatencyCombine', path: 'flat', nodes: 4 });
  });

  it('wideep plan --json reports it per phase: --nnodes drives it', async () => {
    const wide = '--tp 32 --dp-size 32 --enable-dp-attention --ep-size 32 --moe-a2a-backend deepep --deepep-mode auto --model DeepSeek-V3 --json';
    const [decode, prefill] = await planJson(`${wide} --nnodes 4`);
    expect(decode).toMatchObject({ phase: 'decode', mode: 'low_latency', epCalls: { dispatch: 'lowLatencyDispatch', path: 'flat', nodes: 4 } });
    expect(prefill).toMatchObject({ phase: 'prefill', mode: 'normal', epCalls: { dispatch: 'dispatch', combine: 'combine', path: 'hierarchical', nodes: 4 } });
    const [, oneNode] = await planJson(`${wide} --nnodes 1 --gpus-per-node 32`);
    expect(oneNode).toMatchObject({ epCalls: { path: 'flat', nodes: 1 } });
    const [none] = await planJson('--tp 8 --model DeepSeek-V3 --json');
    expect(none!.epCalls).toBeUndefined();
  });
});
