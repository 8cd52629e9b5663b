/**
 * One decoder layer's step with DP attention, as SGLang runs DeepSeek with
 * --enable-dp-attention: the caller's attention on its DP rank's tokens,
 * then, where an attention-TP group splits that attention, dpScatter of the
 * row-parallel partial sums (each member keeps its share of the tokens,
 * padded to the group size), the MoE layer on that share as the step's plan
 * says (idle ranks too: they join every collective with no tokens), and
 * dpGather of the MoE output back to all the group's tokens. Everything is
 * enqueued on one stream; norms and residuals are the attention function's
 * and the caller's.
 */
import type { Communicator } from '../comm/communicator.js';
import type { Stream } from '../cuda/stream.js';
import { WideepError } from '../errors.js';
import { padTokenCount, type DpStepPlan } from '../planning/dp-step.js';
import { deviceTensor, expectDType, expectShape, streamFor } from '../tensor/checks.js';
import { Tensor } from '../tensor/tensor.js';
import { dpGather, dpScatter } from './attention-tp.js';
import type { MoeLayer } from './layer.js';
import { forwardPlanned } from './step-plan.js';

/**
 * The attention block: for x bf16 [T, H] it returns bf16 [T, H] on `stream`,
 * the MoE layer's input; with an attention-TP group, this member's partial
 * sums of it (its heads' share of the row-parallel output projection), which
 * dpScatter adds up. The step frees the tensor it returns (in stream order),
 * unless that is x itself.
 */
export type AttentionFunction = (input: { x: Tensor; stream: Stream }) => Tensor | Promise<Tensor>;

export interface DecoderStepOptions {
  attention: AttentionFunction;
  /** This step's plan from agreeOnStep, the same on every rank; its token counts are the MoE's (moeTokenCount). */
  plan: DpStepPlan;
  /** This rank's attention-TP group (CommGroups' 'attnTp'); none, or one of size 1: no scatter or gather. */
  attnTp?: Communicator;
  stream?: Stream;
  /** Tokens per sequence of the MoE's tokens, for two-batch overlap's split (only without an attention-TP group). */
  seqLens?: readonly number[];
}

/** The tokens a rank's MoE layer gets in a step of T attention tokens: its share of them, padded, in an attention-TP group of `attnTpSize`. */
export function moeTokenCount(T: number, attnTpSize: number): number {
  return padTokenCount(T, attnTpSize) / attnTpSize;
}

/** The MoE output bf16 [T, H] for each of x's T tokens. A collective over the EP group (and the attention-TP group). */
export async function forwardDecoderLayer(layer: MoeLayer, x: Tensor, o: DecoderStepOptions): Promise<Tensor> {
  const where = 'forwardDecoderLayer';
  if (typeof o?.attention !== 'function') throw new WideepError('ERR_INVALID_ARG', `${where}: attention: expected a function ({ x, stream }) => Tensor`);
  deviceTensor(where, 'x', x, layer.device);
  expectDType(where, 'x', x, ['bf16']);
  expectShape(where, 'x', x, ['T', 'H'], [null, layer.config.hidden]);
  const T = x.shape[0]!;
  const tp = o.attnTp && o.attnTp.size > 1 ? o.attnTp : undefined;
  if (tp && o.seqLens) throw new WideepError('ERR_INVALID_ARG', `${where}: seqLens: the MoE gets a share of the tokens in an attention-TP group, not whole sequences`);
  const stream = streamFor(where, layer.device, o.stream);
  const a = await o.attention({ x, stream });
  const owned = a !== x && a instanceof Tensor ? [a] : [];
  try {
    deviceTensor(where, 'the attention output', a, layer.device);
    expectDType(where, 'the attention output', a, ['bf16']);
    expectShape(where, 'the attention output', a, ['T', 'H'], [T, layer.config.hidden]);
    const h = tp ? dpScatter(a, tp, { stream }) : a;
    if (h !== a) owned.push(h);
    const y = await forwardPlanned(layer, h, o.plan, { stream, seqLens: o.seqLens });
    if (!tp) return y;
    owned.push(y);
    return dpGather(y, tp, T, { stream });
  } finally {
    for (const t of owned) t.close(stream);
  }
}
