/**
 * Normal-mode measurements (docs/performance.md): BF16 and FP8 dispatch with and
 * without a cached handle, and BF16 combine, at one SM budget.
 */
import type { Stream } from '../../cuda/stream.js';
import type { EpBuffer } from '../../ep/buffer.js';
import type { DispatchResult } from '../../ep/types.js';
import type { EpInputs } from './ep-inputs.js';
import type { GpuTimer, Samples } from './gpu-timer.js';

export type NormalOp = 'dispatch-bf16' | 'dispatch-bf16-cached' | 'dispatch-fp8' | 'dispatch-fp8-cached' | 'combine-bf16';

export interface RankMeasurement {
  op: string;
  /** The combine's sending SMs, where set. */
  sendSms?: number;
  /** Bytes this rank moved by docs/performance.md's definition. */
  bytes: number;
  samples: Samples;
}

/** FP8 rows count their scales: (1 + 4/128) / 2 of the BF16 bytes. */
export const FP8_BYTES_RATIO = (1 + 4 / 128) / 2;

export async function measureNormal(o: {
  buffer: EpBuffer;
  inputs: EpInputs;
  stream: Stream;
  timer: GpuTimer;
  numSms: number;
  /** The combine is measured once per entry (undefined: the library's default share). */
  sendSms: readonly (number | undefined)[];
  iters: number;
  warmup: number;
}): Promise<RankMeasurement[]> {
  const { buffer, inputs, stream, timer, numSms, iters, warmup } = o;
  const H = inputs.x.shape[1]!;
  const release = (r: DispatchResult) => r.release();
  const routed = { topkIdx: inputs.topkIdx, topkWeights: inputs.topkWeights, numSms, stream };

  const base = await buffer.dispatch({ x: inputs.x, ...routed });
  await base.event!.done();
  const rows = base.numRecvTokens;
  const bf16Bytes = rows * H * 2;
  const out: RankMeasurement[] = [];
  const run = async (op: NormalOp, bytes: number, s: Promise<Samples>, sendSms?: number) =>
    out.push({ op, bytes, samples: await s, ...(sendSms === undefined ? {} : { sendSms }) });

  await run('dispatch-bf16', bf16Bytes, timer.time({ iters, warmup, op: () => buffer.dispatch({ x: inputs.x, ...routed }), after: release }));
  await run('dispatch-bf16-cached', bf16Bytes, timer.time({ iters, warmup, op: () => buffer.dispatch({ x: inputs.x, handle: base.handle, numSms, stream }), after: release }));
  const fp8 = { x: inputs.xFp8, xScales: inputs.xScales };
  await run('dispatch-fp8', bf16Bytes * FP8_BYTES_RATIO, timer.time({ iters, warmup, op: () => buffer.dispatch({ ...fp8, ...routed }), after: release }));
  await run('dispatch-fp8-cached', bf16Bytes * FP8_BYTES_RATIO, timer.time({ iters, warmup, op: () => buffer.dispatch({ ...fp8, handle: base.handle, numSms, stream }), after: release }));
  for (const numSendSms of o.sendSms) {
    await run(
      'combine-bf16',
      bf16Bytes,
      timer.time({
        iters,
        warmup,
        op: () => buffer.combine({ x: base.recvX, handle: base.handle, keepHandle: true, numSms, numSendSms, stream }),
        after: (r) => r.combinedX.close(),
      }),
      numSendSms,
    );
  }
  base.release();
  return out;
}
