/**
 * One rank of `wideep bench ep` (started by the command through the
 * launcher): measures, then rank 0 gathers every rank's samples through the
 * store and writes them where the command reads them.
 */
import { writeFileSync } from 'node:fs';

import { Communicator } from '../../comm/communicator.js';
import { Stream } from '../../cuda/stream.js';
import { initProcessGroup } from '../../runtime/process-group.js';
import { EpBuffer } from '../../ep/buffer.js';
import { WideepError } from '../../errors.js';
import { makeEpInputs } from './ep-inputs.js';
import { measureNcclBaseline } from './ep-baseline.js';
import { EP_BENCH_CONFIG_VAR, type EpBenchConfig, type EpRankResult, type EpRankRow } from './ep-config.js';
import { measureLowLatency } from './ep-low-latency.js';
import { measureNormal } from './ep-normal.js';
import { GpuTimer } from './gpu-timer.js';

function progress(text: string): void {
  process.stderr.write(`[bench ep] ${text}\n`);
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env[EP_BENCH_CONFIG_VAR] ?? 'null') as EpBenchConfig | null;
  if (!config) throw new WideepError('ERR_INVALID_ARG', `${EP_BENCH_CONFIG_VAR} is not set; run this through 'wideep bench ep'`);
  const pg = await initProcessGroup();
  if (pg.device === undefined) throw new WideepError('ERR_NO_GPU', `rank ${pg.rank} has no GPU`);
  const device = pg.device;
  const stream = new Stream(device);
  const normal = config.mode === 'normal';
  const comm = await Communicator.create(pg);
  const timer = new GpuTimer(stream, { flushL2: normal, comm });
  const buffer = await EpBuffer.create(pg, {
    backend: 'cuda',
    hidden: config.hidden,
    numExperts: config.experts,
    maxTokensPerRank: normal ? config.tokens : 128,
    maxTopk: config.topk,
    lowLatency: normal ? undefined : { maxTokensPerRank: config.tokens },
  });
  const rows: EpRankRow[] = [];
  for (const [i, routing] of config.routings.entries()) {
    const inputs = await makeEpInputs({
      tokens: config.tokens,
      hidden: config.hidden,
      topk: config.topk,
      experts: config.experts,
      routing,
      seed: config.seed + 7919 * pg.rank + 104729 * i,
      device: `cuda:${device}`,
      withFp8: normal,
    });
    if (normal) {
      for (const numSms of config.numSms) {
        if (pg.rank === 0) progress(`${routing} routing, ${numSms} SMs`);
        const m = await measureNormal({ buffer, inputs, stream, timer, numSms, sendSms: config.sendSms ?? [undefined], iters: config.iters, warmup: config.warmup });
        rows.push(...m.map((r) => ({ routing, numSms, ...r })));
      }
      if (config.baseline) {
        if (pg.rank === 0) progress(`${routing} routing, NCCL baseline`);
        const key = `wideep/bench/ep/plan/${i}`;
        const m = await measureNcclBaseline({
          comm,
          store: pg.store,
          key,
          inputs,
          expertsPerRank: config.experts / pg.worldSize,
          stream,
          timer,
          iters: config.iters,
          warmup: config.warmup,
        });
        rows.push(...m.map((r) => ({ routing, ...r })));
      }
    } else {
      if (pg.rank === 0) progress(`${routing} routing, low-latency`);
      const m = await measureLowLatency({
        buffer,
        inputs,
        stream,
        timer,
        iters: config.iters,
        warmup: config.warmup,
        graphReplays: config.graphReplays,
        seed: config.seed + 31 * pg.rank,
      });
      rows.push(...m.map((r) => ({ routing, ...r })));
    }
    for (const t of [inputs.x, inputs.xFp8, inputs.xScales, inputs.topkIdx, inputs.topkWeights]) t.close();
  }
  const mine: EpRankResult = { rank: pg.rank, device, rows };
  await pg.store.set(`wideep/bench/ep/result/${pg.rank}`, JSON.stringify(mine));
  if (pg.rank === 0) {
    const all = await Promise.all(
      Array.from({ length: pg.worldSize }, async (_, r) => JSON.parse(new TextDecoder().decode(await pg.store.get(`wideep/bench/ep/result/${r}`))) as EpRankResult),
    );
    writeFileSync(config.out, JSON.stringify(all));
  }
  await pg.store.barrier('wideep/bench/ep/done');
  comm.close();
  timer.close();
  await buffer.close();
  stream.close();
  await pg.close();
}

main().catch((e: unknown) => {
  process.stderr.write(`[bench ep] failed: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
