/**
 * Normal-mode combine across nodes on the cpu backend: the two legs of
 * src/ep/cpu/node-dispatch.ts in reverse.
 *
 * 1. meta: [call words, H, hasTopkWeights] to every rank, so every rank gives
 *    the same verdict before any row moves.
 * 2. NVLink leg: rank (b, j) returns the rows it received from each rank
 *    (a, i) to their forwarder (b, i).
 * 3. The forwarder sums each token's rows over its node's ranks in
 *    increasing order in float32 and rounds the sum to bf16 once: the
 *    node's partial, what the network carries (as in DeepEP's internode
 *    combine). Weights stay float32.
 * 4. network leg: one partial per (token, node) goes back to the token's
 *    origin, which sums them over nodes in increasing order in float32, adds
 *    the biases and rounds once.
 *
 * So the result differs from the flat path's (one float32 sum over ranks)
 * only by that rounding of each node's partial, and by the float32 sums'
 * grouping: within 2^-6 of the sum of the terms' magnitudes
 * (docs/architecture.md "EP across nodes").
 */
import { WideepError } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import type { BackendCombineArgs, BackendCombineResult } from '../backend.js';
import type { EpCall } from '../calls.js';
import type { CpuTransport } from '../transport.js';
import type { EpConfig } from '../types.js';
import { AGREED } from './combine.js';
import type { CpuRouting } from './dispatch.js';
import { addBf16, roundToBf16 } from './kernels.js';
import { Legs } from './legs.js';
import type { NodeRouting } from './node-dispatch.js';
import { nodeOf, sameIndexRanks, sameNodeRanks } from './nodes.js';
import { CALL_WORDS, Collective, allocMessage, callWords, checkAgreement, checkCall, checkSections, float32View, int32View, uint16View } from './wire.js';

/** Rows (bf16) and, when the combine has topkWeights, their float32 weights. */
interface Rows {
  rows: Uint16Array;
  weights: Float32Array | undefined;
}

interface Shape {
  H: number;
  k: number;
  weighted: boolean;
}

/** Sends the meta messages at call time; the returned promise does the rest. */
export function cpuNodeCombine(transport: CpuTransport, config: EpConfig, args: BackendCombineArgs<CpuRouting>, call: EpCall): Promise<BackendCombineResult> {
  const shape: Shape = { H: args.x.shape[1]!, k: args.routing.topk, weighted: args.topkWeights !== undefined };
  const { bytes, sections } = allocMessage([4 * (CALL_WORDS + 2)]);
  int32View(sections[0]!).set([...callWords('combine', call), shape.H, shape.weighted ? 1 : 0]);
  const collective = new Collective('combine', transport, config.timeoutMs, new Array<Uint8Array>(config.worldSize).fill(bytes), call);
  return finishNodeCombine(collective, transport, config, args, shape, call);
}

async function finishNodeCombine(
  collective: Collective,
  transport: CpuTransport,
  config: EpConfig,
  args: BackendCombineArgs<CpuRouting>,
  shape: Shape,
  call: EpCall,
): Promise<BackendCombineResult> {
  const where = 'combine';
  const nodes = args.routing.nodes!;
  const headers = (await collective.meta()).map((sections) => int32View(sections[0]!));
  checkCall(where, 'combine', call, headers);
  checkAgreement(where, headers, AGREED);

  const legs = new Legs(where, transport, config.timeoutMs);
  const forwarders = sameNodeRanks(config);
  const back = await legs.run(
    (dst) => (forwarders.includes(dst) ? returnMessage(args, config, dst, shape) : undefined),
    forwarders,
    (got) => forwarders.map((src, j) => readBlocks(where, src, got[src]!, nodes.forward.map((perRank) => perRank[j]!.length), shape)),
  );
  const partials = back && reduceWithinNode(back, nodes, shape);
  const origins = sameIndexRanks(config);
  const fromNodes = await legs.run(
    (dst) => (origins.includes(dst) ? blocksMessage([partials![nodeOf(dst, config)]!], shape) : undefined),
    origins,
    (got) => origins.map((src, b) => readBlocks(where, src, got[src]!, [nodes.nodeTokens[b]!.length], shape)[0]!),
  );
  legs.finish();
  return sumOverNodes(args, fromNodes!, nodes.nodeTokens, shape);
}

/** A message of row blocks: [rows per block], bf16 rows, float32 weights (none without topkWeights). */
function blocksMessage(blocks: readonly Rows[], shape: Shape): Uint8Array {
  const n = blocks.reduce((sum, b) => sum + b.rows.length / shape.H, 0);
  const { bytes, sections } = allocMessage([4 * blocks.length, 2 * n * shape.H, shape.weighted ? 4 * n * shape.k : 0]);
  int32View(sections[0]!).set(blocks.map((b) => b.rows.length / shape.H));
  let row = 0;
  for (const b of blocks) {
    uint16View(sections[1]!).set(b.rows, row * shape.H);
    if (b.weights) float32View(sections[2]!).set(b.weights, row * shape.k);
    row += b.rows.length / shape.H;
  }
  return bytes;
}

/** ERR_PROTOCOL unless rank `src` sent blocks of the expected row counts; the blocks otherwise. */
function readBlocks(where: string, src: number, sections: Uint8Array[], expected: readonly number[], shape: Shape): Rows[] {
  const counts = int32View(sections[0]!);
  if (counts.length !== expected.length || counts.some((n, i) => n !== expected[i])) {
    throw new WideepError(
      'ERR_PROTOCOL',
      `${where}: rank ${src} returns blocks of [${counts.join(', ')}] rows, but this rank's dispatch expects [${expected.join(', ')}]; ` +
        'all ranks must pass handles of the same dispatch',
    );
  }
  const n = expected.reduce((a, b) => a + b, 0);
  checkSections(where, src, sections, [2 * n * shape.H, shape.weighted ? 4 * n * shape.k : 0]);
  const rows = uint16View(sections[1]!);
  const weights = shape.weighted ? float32View(sections[2]!) : undefined;
  let row = 0;
  return expected.map((m) => {
    const block = { rows: rows.subarray(row * shape.H, (row + m) * shape.H), weights: weights?.subarray(row * shape.k, (row + m) * shape.k) };
    row += m;
    return block;
  });
}

/** To forwarder `dst` = (b, i): the rows received from each rank (a, i), a ascending (contiguous in x). */
function returnMessage(args: BackendCombineArgs<CpuRouting>, config: EpConfig, dst: number, shape: Shape): Uint8Array {
  const { recvCounts } = args.routing;
  const P = config.ranksPerNode;
  const x = args.x.data as Uint16Array;
  const weights = args.topkWeights?.data as Float32Array | undefined;
  const firsts = recvCounts.reduce<number[]>((acc, n) => [...acc, acc.at(-1)! + n], [0]);
  const blocks: Rows[] = [];
  for (let s = dst % P; s < recvCounts.length; s += P) {
    const [from, to] = [firsts[s]!, firsts[s + 1]!];
    blocks.push({ rows: x.subarray(from * shape.H, to * shape.H), weights: weights?.subarray(from * shape.k, to * shape.k) });
  }
  return blocksMessage(blocks, shape);
}

/** Per source node: each of its tokens' rows summed over this node's ranks (in order, float32) and rounded to bf16. */
function reduceWithinNode(back: readonly Rows[][], nodes: NodeRouting, shape: Shape): Rows[] {
  const { H, k } = shape;
  return Array.from(nodes.netCounts, (n, a) => {
    const acc = new Float32Array(n * H);
    const weights = shape.weighted ? new Float32Array(n * k) : undefined;
    back.forEach((blocks, j) => {
      const { rows, weights: w } = blocks[a]!;
      nodes.forward[a]![j]!.forEach((p, q) => {
        addBf16(acc, p * H, rows, q * H, H);
        for (let c = 0; c < (weights ? k : 0); c++) weights![p * k + c] += w![q * k + c]!;
      });
    });
    const rows = new Uint16Array(n * H);
    roundToBf16(acc, rows);
    return { rows, weights };
  });
}

/** The origin's result: per token, the nodes' partials in node order, then the biases, rounded once. */
function sumOverNodes(args: BackendCombineArgs<CpuRouting>, fromNodes: readonly Rows[], nodeTokens: readonly Int32Array[], shape: Shape): BackendCombineResult {
  const { H, k } = shape;
  const T = args.routing.numTokens;
  const acc = new Float32Array(T * H);
  const combinedTopkWeights = shape.weighted ? Tensor.empty([T, k], 'f32') : undefined;
  const accW = combinedTopkWeights?.data as Float32Array | undefined;
  fromNodes.forEach(({ rows, weights }, b) => {
    nodeTokens[b]!.forEach((t, q) => {
      addBf16(acc, t * H, rows, q * H, H);
      for (let c = 0; c < (accW ? k : 0); c++) accW![t * k + c] += weights![q * k + c]!;
    });
  });
  for (const bias of args.bias) addBf16(acc, 0, bias.data as Uint16Array, 0, T * H);
  const combinedX = args.out ?? Tensor.empty([T, H], 'bf16');
  roundToBf16(acc, combinedX.data as Uint16Array);
  return { combinedX, combinedTopkWeights };
}
