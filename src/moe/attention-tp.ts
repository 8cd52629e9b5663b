/**
 * Around attention when a DP rank's attention is split over an attention-TP
 * group: the row-parallel output projection leaves each member a partial sum
 * of every token, so dpScatter reduce-scatters it (each member keeps its
 * share of the tokens, summed, for the MoE), and dpGather all-gathers the
 * MoE output back so every member holds all tokens for the next attention.
 * Token counts are padded to a multiple of the group size (the planner's
 * padTokenCount); padded rows are zero going in and dropped coming out.
 */
import type { Communicator } from '../comm/communicator.js';
import type { Stream } from '../cuda/stream.js';
import { WideepError } from '../errors.js';
import { padTokenCount } from '../planning/dp-step.js';
import { deviceTensor, expectDType, expectShape, streamFor } from '../tensor/checks.js';
import { Tensor } from '../tensor/tensor.js';
import { firstRows, padRows } from './row-padding.js';

/** Partial sums bf16 [T, H] of every token -> this member's summed share [padded T / size, H]. A collective over `comm`. */
export function dpScatter(x: Tensor, comm: Communicator, options: { stream?: Stream } = {}): Tensor {
  const where = 'dpScatter';
  deviceTensor(where, 'x', x);
  expectDType(where, 'x', x, ['bf16']);
  expectShape(where, 'x', x, ['T', 'H'], [null, null]);
  const [T, H] = x.shape as [number, number];
  const stream = streamFor(where, x.deviceIndex, options.stream);
  const at = `cuda:${x.deviceIndex}` as const;
  const padded = padTokenCount(T, comm.size);
  const input = padded === T ? x : padRows(x, padded, stream);
  const out = comm.reduceScatter(input, Tensor.empty([padded / comm.size, H], 'bf16', { device: at, stream }), { stream });
  if (input !== x) input.close(stream);
  return out;
}

/** This member's share bf16 [padded T / size, H] -> all `numTokens` tokens [T, H]. A collective over `comm`. */
export function dpGather(x: Tensor, comm: Communicator, numTokens: number, options: { stream?: Stream } = {}): Tensor {
  const where = 'dpGather';
  deviceTensor(where, 'x', x);
  expectDType(where, 'x', x, ['bf16']);
  const padded = padTokenCount(numTokens, comm.size);
  expectShape(where, 'x', x, ['T / size', 'H'], [padded / comm.size, null]);
  if (!Number.isInteger(numTokens) || numTokens < 0) throw new WideepError('ERR_INVALID_ARG', `${where}: numTokens ${String(numTokens)} must be an integer >= 0`);
  const H = x.shape[1]!;
  const stream = streamFor(where, x.deviceIndex, options.stream);
  const at = `cuda:${x.deviceIndex}` as const;
  const all = comm.allGather(x, Tensor.empty([padded, H], 'bf16', { device: at, stream }), { stream });
  if (padded === numTokens) return all;
  const out = firstRows(all, numTokens, stream);
  all.close(stream);
  return out;
}
