/**
 * The NCCL baseline carrying the same routed rows as our kernels: permute
 * (gather rows per destination) + all-to-all-v for dispatch, and
 * all-to-all-v back + index-add for combine, as PyTorch code would do it.
 */
import type { Communicator } from '../../comm/communicator.js';
import type { Stream } from '../../cuda/stream.js';
import type { KeyValueStore } from '../../runtime/types.js';
import { requireCuda } from '../../native/index.js';
import { Tensor } from '../../tensor/tensor.js';
import type { EpInputs } from './ep-inputs.js';
import type { RankMeasurement } from './ep-normal.js';
import type { GpuTimer } from './gpu-timer.js';

/** SMs the gather/scatter kernels may use (the whole H200: NCCL's steps get no SM budget either). */
const BASELINE_SMS = 132;

/** Rows this rank sends, grouped by destination rank in token order. */
export function sendPlan(topk: Int32Array, tokens: number, k: number, expertsPerRank: number, worldSize: number) {
  const perRank: number[][] = Array.from({ length: worldSize }, () => []);
  for (let t = 0; t < tokens; t++) {
    const seen = new Set<number>();
    for (let j = 0; j < k; j++) {
      const e = topk[t * k + j]!;
      if (e >= 0) seen.add(Math.floor(e / expertsPerRank));
    }
    for (const r of [...seen].sort((a, b) => a - b)) perRank[r]!.push(t);
  }
  return { counts: perRank.map((l) => l.length), order: Int32Array.from(perRank.flat()) };
}

export async function measureNcclBaseline(o: {
  comm: Communicator;
  store: KeyValueStore;
  key: string;
  inputs: EpInputs;
  expertsPerRank: number;
  stream: Stream;
  timer: GpuTimer;
  iters: number;
  warmup: number;
}): Promise<RankMeasurement[]> {
  const { comm, inputs, stream, timer, iters, warmup } = o;
  const cuda = requireCuda('NCCL baseline');
  const [T, H] = inputs.x.shape as [number, number];
  const k = inputs.topkIdx.shape[1]!;
  const plan = sendPlan(inputs.topkHost, T, k, o.expertsPerRank, comm.size);
  await o.store.set(`${o.key}/${comm.rank}`, JSON.stringify(plan.counts));
  const all = await Promise.all(
    Array.from({ length: comm.size }, async (_, r) => JSON.parse(new TextDecoder().decode(await o.store.get(`${o.key}/${r}`))) as number[]),
  );
  const recvCounts = all.map((c) => c[comm.rank]!);
  const sendTotal = plan.order.length;
  const recvTotal = recvCounts.reduce((a, b) => a + b, 0);
  const device = inputs.x.device;
  const on = { device, stream };
  const order = await Tensor.from(plan.order, { dtype: 'i32' }).to(device);
  const permuted = Tensor.empty([sendTotal, H], 'bf16', on);
  const received = Tensor.empty([recvTotal, H], 'bf16', on);
  const back = Tensor.empty([sendTotal, H], 'bf16', on);
  const combined = Tensor.empty([T, H], 'bf16', on);
  const bytes = recvTotal * H * 2;
  const permute = () => cuda.gatherRows(permuted.ptr, inputs.x.ptr, order.ptr, sendTotal, H * 2, BASELINE_SMS, stream.native);
  const a2a = () => comm.allToAllv(permuted, plan.counts, received, recvCounts, { stream });
  const out: RankMeasurement[] = [];
  out.push({ op: 'nccl-dispatch', bytes, samples: await timer.time({ iters, warmup, op: async () => (permute(), a2a()) }) });
  out.push({ op: 'nccl-all-to-all-v', bytes, samples: await timer.time({ iters, warmup, op: async () => a2a() }) });
  out.push({
    op: 'nccl-combine',
    bytes,
    samples: await timer.time({
      iters,
      warmup,
      op: async () => {
        comm.allToAllv(received, recvCounts, back, plan.counts, { stream });
        combined.fillBytes(0, stream);
        cuda.scatterAddBf16(combined.ptr, back.ptr, order.ptr, sendTotal, H, BASELINE_SMS, stream.native);
      },
    }),
  });
  for (const t of [order, permuted, received, back, combined]) t.close();
  return out;
}
