import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { command } from '../../../src/cli/commands/plan.js';
import type { CliIo } from '../../../src/cli/command.js';

const WIDE_EP =
  '--tp 64 --dp-size 64 --enable-dp-attention --ep-size 64 --moe-a2a-backend deepep --deepep-mode low_latency --enable-two-batch-overlap --enable-eplb';

async function run(args: string | string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (t) => out.push(t), err: (t) => err.push(t) };
  const code = await command.run(typeof args === 'string' ? args.split(' ') : args, io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('wideep plan', () => {
  it('reports attnTpSize 1, moeTpSize 1 and expertsPerGpu 4 in JSON for the WideEP example', async () => {
    const r = await run(`${WIDE_EP} --model DeepSeek-V3 --json`);
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.out);
    expect(plan.attnTpSize).toBe(1);
    expect(plan.moeTpSize).toBe(1);
    expect(plan.expertsPerGpu).toBe(4);
    expect(plan.model.name).toBe('DeepSeek-V3');
    expect(plan.placement.phy2log).toHaveLength(58);
    expect(plan.placement.phy2log[0]).toHaveLength(256);
  });

  it('prints a readable plan with the derived sizes', async () => {
    const r = await run(WIDE_EP);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/attnTpSize 1 .*moeTpSize 1/);
    expect(r.out).toMatch(/expertsPerGpu 4/);
    expect(r.out).toMatch(/dense weights \(replicated\)/);
    expect(r.out).toMatch(/KV cache budget .* tokens/);
    expect(r.out).toMatch(/decode\s+low_latency\s+flat\s+128/);
    expect(r.out).toMatch(/placement of layer 3/);
  });

  it('keeps the placement compact at 256 GPUs', async () => {
    const r = await run('--tp 256 --dp-size 256 --enable-dp-attention --moe-a2a-backend deepep --ep-num-redundant-experts 256');
    expect(r.code).toBe(0);
    expect(r.out.split('\n').length).toBeLessThan(60);
    expect(r.out).toMatch(/246 more GPUs \(--json carries every GPU of every layer\)/);
    expect(r.out).toMatch(/expertsPerGpu 2/);
    expect(r.err).toMatch(/warning: --ep-size 1 -> 256: SGLang sets ep-size to tp \(256\)/);
  });

  it('refuses a bad combination with exit 2 and names the rule', async () => {
    const r = await run('--tp 64 --dp-size 48 --enable-dp-attention');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--dp-size 48: tp \(64\) must be divisible by dp-size when --enable-dp-attention is set/);
    expect(r.out).toBe('');
  });

  it('refuses unknown flags, stray arguments, unknown models and GPUs with exit 2', async () => {
    expect((await run('--tp 8 --tensor-parallel 8')).code).toBe(2);
    expect((await run('--tp 8 extra')).err).toMatch(/unexpected argument 'extra'/);
    expect((await run('--model gpt-5')).err).toMatch(/--model gpt-5: not a preset/);
    expect((await run('--gpu a100')).err).toMatch(/--gpu a100: must be one of h100, h200, b200/);
    expect((await run('--rdma-bw 0')).err).toMatch(/--rdma-bw 0: must be > 0/);
    expect((await run(`${WIDE_EP} --layer 0`)).err).toMatch(/--layer 0: not a MoE layer of DeepSeek-V3 \(MoE layers are 3..60\)/);
  });

  it('plans a model from a JSON file, on a chosen GPU', async () => {
    const model = fileURLToPath(new URL('../../fixtures/planning/tiny-model.json', import.meta.url));
    const r = await run(['--tp', '4', '--ep-size', '4', '--model', model, '--gpu', 'h100', '--gpu-memory-gb', '80', '--json']);
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.out);
    expect(plan.model.name).toBe('tiny-moe');
    expect(plan.expertsPerGpu).toBe(2);
    expect(plan.memory.gpu).toBe('H100');
    expect(plan.memory.gpuMemoryBytes).toBe(80e9);
  });

  it('places experts with EPLB from --eplb-stats', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wideep-plan-'));
    const stats = join(dir, 'stats.json');
    writeFileSync(stats, JSON.stringify(Array.from({ length: 58 }, (_, l) => Array.from({ length: 256 }, (_, e) => ((e * 37 + l) % 101) ** 2))));
    const r = await run(`${WIDE_EP} --ep-num-redundant-experts 64 --eplb-stats ${stats} --json`);
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.out);
    expect(plan.placement.source).toBe('eplb');
    expect(plan.expertsPerGpu).toBe(5);
    expect(plan.eplb.balancednessAfter).toBeGreaterThan(plan.eplb.balancednessBefore);
    const human = await run(`${WIDE_EP} --ep-num-redundant-experts 64 --eplb-stats ${stats}`);
    expect(human.out).toMatch(/EPLB hierarchical .*balancedness \d\.\d+ -> \d\.\d+/);
    expect((await run(`${WIDE_EP} --eplb-stats ${join(dir, 'none.json')}`)).err).toMatch(/--eplb-stats .*cannot read the file/);
  });
});
