/**
 * Normal-mode dispatch across nodes on the cpu backend, routed as DeepEP's
 * internode kernels route it. Nodes are runs of P = ranksPerNode ranks;
 * rank (a, i) is local rank i of node a.
 *
 * 1. meta: the flat path's header to every rank (src/ep/cpu/dispatch.ts), so
 *    every rank gives the same verdict before any row moves.
 * 2. network leg: rank (a, i) sends each token once to rank (b, i) of every
 *    node b that holds one of its experts: the row, its scales, its global
 *    top-k ids and weights.
 * 3. NVLink leg: rank (b, i) forwards each token to the ranks of node b that
 *    hold its experts, with their local expert ids, grouped by source node.
 *
 * A receiver (b, j) finds the rows of source rank (a, i) as block a of
 * forwarder (b, i)'s message, in token order, so it lays rows out by source
 * rank then source token exactly as the flat path does: both give the same
 * result, bit for bit.
 */
import { WideepError } from '../../errors.js';
import type { BackendDispatchArgs, BackendDispatchResult } from '../backend.js';
import type { EpCall } from '../calls.js';
import { computeDispatchLayout, expertOwner, readTopkIdx, tokensPerDestination } from '../dispatch-layout.js';
import type { CpuTransport } from '../transport.js';
import type { EpConfig } from '../types.js';
import {
  FIXED,
  cachedCountsProblem,
  checkDispatchHeaders,
  dispatchHeader,
  dispatchResult,
  dispatchShape,
  outputRows,
  receivedTensors,
  type CpuRouting,
  type Shape,
} from './dispatch.js';
import { Legs } from './legs.js';
import { nodeOf, sameIndexRanks, sameNodeRanks } from './nodes.js';
import { copyRows } from './kernels.js';
import { Collective, allocMessage, bytesOf, checkSections, float32View, int32View } from './wire.js';

/** What a dispatch across nodes adds to its routing, for its combine and cached dispatches. */
export interface NodeRouting {
  /** Per node: the ascending indices of this rank's tokens sent there over the network leg. */
  readonly nodeTokens: readonly Int32Array[];
  /** As a forwarder, per source node: the tokens received over the network leg. */
  readonly netCounts: Int32Array;
  /** As a forwarder, [source node][local rank]: positions in that node's network message forwarded to the local rank. */
  readonly forward: readonly (readonly Int32Array[])[];
}

/** A received network message: its token count and sections [count, rows, scales, top-k ids?, weights?]. */
interface NetMessage {
  n: number;
  sections: Uint8Array[];
}

/** Sends the meta messages at call time; the returned promise does the rest. */
export function cpuNodeDispatch(transport: CpuTransport, config: EpConfig, args: BackendDispatchArgs<CpuRouting>, call: EpCall): Promise<BackendDispatchResult<CpuRouting>> {
  const { worldSize: R, ranksPerNode: P } = config;
  const shape = dispatchShape(args);
  let sendTokens: readonly Int32Array[];
  let nodeTokens: readonly Int32Array[];
  if (args.cached) {
    sendTokens = args.cached.sendTokens;
    nodeTokens = args.cached.nodes!.nodeTokens;
  } else {
    const { isTokenInRank } = computeDispatchLayout(readTopkIdx(args.topkIdx!), shape.T, shape.k, config.numExperts, R, P);
    sendTokens = tokensPerDestination(isTokenInRank, shape.T, R);
    nodeTokens = tokensPerDestination(isTokenInNode(isTokenInRank, shape.T, R, P), shape.T, R / P);
  }
  const { bytes, sections } = allocMessage([4 * (FIXED + R)]);
  int32View(sections[0]!).set(dispatchHeader(args, shape, sendTokens, call));
  const collective = new Collective('dispatch', transport, config.timeoutMs, new Array<Uint8Array>(R).fill(bytes), call);
  return finishNodeDispatch(collective, transport, config, args, shape, { sendTokens, nodeTokens }, call);
}

/** [T * nodes]: 1 where the token goes to some rank of the node. */
function isTokenInNode(isTokenInRank: Uint8Array, T: number, R: number, P: number): Uint8Array {
  const out = new Uint8Array(T * (R / P));
  for (let i = 0; i < T * R; i++) if (isTokenInRank[i]) out[Math.floor(i / R) * (R / P) + Math.floor((i % R) / P)] = 1;
  return out;
}

async function finishNodeDispatch(
  collective: Collective,
  transport: CpuTransport,
  config: EpConfig,
  args: BackendDispatchArgs<CpuRouting>,
  shape: Shape,
  plan: { sendTokens: readonly Int32Array[]; nodeTokens: readonly Int32Array[] },
  call: EpCall,
): Promise<BackendDispatchResult<CpuRouting>> {
  const where = 'dispatch';
  const { cached } = args;
  const headers = (await collective.meta()).map((sections) => int32View(sections[0]!));
  const recvCounts = checkDispatchHeaders(where, cached !== undefined, call, headers, config);

  const legs = new Legs(where, transport, config.timeoutMs);
  if (cached) legs.fail(cachedCountsProblem(where, cached, recvCounts));
  const sources = sameIndexRanks(config);
  const net = await legs.run(
    (dst) => (sources.includes(dst) ? networkMessage(args, shape, plan.nodeTokens[nodeOf(dst, config)]!) : undefined),
    sources,
    (got) => sources.map((src, a) => readNetwork(where, src, a, got[src]!, shape, cached)),
  );
  const forward = cached ? cached.nodes!.forward : net && forwardPlan(net, config, shape.k);
  const forwarders = sameNodeRanks(config);
  const got = await legs.run(
    (dst) => (forwarders.includes(dst) ? forwardMessage(net!, forward!, dst, config, shape, cached === undefined) : undefined),
    forwarders,
    (messages) => receive(where, messages, recvCounts, config, args, shape),
  );
  legs.finish();
  const netCounts = Int32Array.from(net!, (m) => m.n);
  return dispatchResult(args, shape, config, got!, { sendTokens: plan.sendTokens, recvCounts, nodes: { nodeTokens: plan.nodeTokens, netCounts, forward: forward! } });
}

/** Sections of a message of n tokens: [n], rows, scales, and (routed) top-k ids and weights. */
function sectionSizes(n: number, shape: Shape, routed: boolean): number[] {
  return [4, n * shape.rowBytes, 4 * n * shape.scalesPerRow, ...(routed ? [4 * n * shape.k, 4 * n * shape.k] : [])];
}

function networkMessage(args: BackendDispatchArgs<CpuRouting>, shape: Shape, tokens: Int32Array): Uint8Array {
  const { k, rowBytes, scalesPerRow: S } = shape;
  const routed = args.cached === undefined;
  const { bytes, sections } = allocMessage(sectionSizes(tokens.length, shape, routed));
  int32View(sections[0]!).set([tokens.length]);
  copyRows(sections[1]!, bytesOf(args.x.data), tokens, rowBytes);
  if (S > 0) copyRows(sections[2]!, bytesOf(args.xScales!.data), tokens, 4 * S);
  if (routed) {
    copyRows(sections[3]!, bytesOf(readTopkIdx(args.topkIdx!)), tokens, 4 * k);
    copyRows(sections[4]!, bytesOf(args.topkWeights!.data), tokens, 4 * k);
  }
  return bytes;
}

/** The network message of rank `src`, on node `node`. */
function readNetwork(where: string, src: number, node: number, sections: Uint8Array[], shape: Shape, cached: CpuRouting | undefined): NetMessage {
  const n = int32View(sections[0]!)[0] ?? -1;
  checkSections(where, src, sections, sectionSizes(n, shape, cached === undefined).slice(1));
  if (cached && n !== cached.nodes!.netCounts[node]) {
    throw new WideepError(
      'ERR_PROTOCOL',
      `${where}: rank ${src} sends ${n} tokens over the network leg with its cached handle, but this rank's handle expects ${cached.nodes!.netCounts[node]}; ` +
        'all ranks must pass handles of the same dispatch',
    );
  }
  return { n, sections };
}

/** [source node][local rank]: the positions of that node's tokens that hold an expert of the local rank. */
function forwardPlan(net: readonly NetMessage[], config: EpConfig, k: number): Int32Array[][] {
  const { ranksPerNode: P, numLocalExperts: L } = config;
  const node = nodeOf(config.rank, config);
  return net.map(({ n, sections }) => {
    const idx = int32View(sections[3]!);
    const lists: number[][] = Array.from({ length: P }, () => []);
    for (let p = 0; p < n; p++) {
      for (let c = 0; c < k; c++) {
        const e = idx[p * k + c]!;
        if (e < 0) continue;
        const owner = expertOwner(e, L);
        const list = lists[owner % P]!;
        if (Math.floor(owner / P) === node && list.at(-1) !== p) list.push(p);
      }
    }
    return lists.map((l) => Int32Array.from(l));
  });
}

/** To local rank `dst`: per source node, the tokens it needs, with its local expert ids (-1 and weight 0 elsewhere). */
function forwardMessage(net: readonly NetMessage[], forward: readonly (readonly Int32Array[])[], dst: number, config: EpConfig, shape: Shape, routed: boolean): Uint8Array {
  const { k, rowBytes, scalesPerRow: S } = shape;
  const j = dst % config.ranksPerNode;
  const counts = forward.map((perRank) => perRank[j]!.length);
  const n = counts.reduce((a, b) => a + b, 0);
  const { bytes, sections } = allocMessage([4 * counts.length, ...sectionSizes(n, shape, routed).slice(1)]);
  int32View(sections[0]!).set(counts);
  const base = dst * config.numLocalExperts;
  let row = 0;
  net.forEach(({ sections: from }, a) => {
    const positions = forward[a]![j]!;
    copyRows(sections[1]!.subarray(row * rowBytes), from[1]!, positions, rowBytes);
    if (S > 0) copyRows(sections[2]!.subarray(4 * row * S), from[2]!, positions, 4 * S);
    if (routed) {
      const idx = int32View(from[3]!);
      const w = float32View(from[4]!);
      const outIdx = int32View(sections[3]!);
      const outW = float32View(sections[4]!);
      positions.forEach((p, q) => {
        for (let c = 0; c < k; c++) {
          const e = idx[p * k + c]!;
          const local = e >= base && e < base + config.numLocalExperts;
          outIdx[(row + q) * k + c] = local ? e - base : -1;
          outW[(row + q) * k + c] = local ? w[p * k + c]! : 0;
        }
      });
    }
    row += positions.length;
  });
  return bytes;
}

/** Lays the forwarded rows out by source rank (a, i) = block a of forwarder i's message, checking them against the headers. */
function receive(where: string, messages: (Uint8Array[] | undefined)[], recvCounts: Int32Array, config: EpConfig, args: BackendDispatchArgs<CpuRouting>, shape: Shape) {
  const { ranksPerNode: P, worldSize: R } = config;
  const { k, rowBytes, scalesPerRow: S } = shape;
  const routed = args.cached === undefined;
  const got = receivedTensors(args, shape, outputRows(args, recvCounts));
  const first = nodeOf(config.rank, config) * P;
  const starts = messages.map((sections, src) => {
    if (!sections) return undefined;
    const counts = int32View(sections[0]!);
    const n = counts.reduce((a, b) => a + b, 0);
    if (counts.length !== R / P) throw new WideepError('ERR_PROTOCOL', `${where}: rank ${src} forwards counts for ${counts.length} nodes, expected ${R / P}`);
    checkSections(where, src, sections, sectionSizes(n, shape, routed).slice(1));
    return counts.reduce<number[]>((acc, c) => [...acc, acc.at(-1)! + c], [0]);
  });
  let row = 0;
  for (let s = 0; s < R; s++) {
    const a = Math.floor(s / P);
    const forwarder = first + (s % P);
    const sections = messages[forwarder]!;
    const at = starts[forwarder]![a]!;
    const n = starts[forwarder]![a + 1]! - at;
    if (n !== recvCounts[s]) {
      throw new WideepError('ERR_PROTOCOL', `${where}: rank ${forwarder} forwards ${n} rows of rank ${s}, whose header announced ${recvCounts[s]}`);
    }
    got.rows.set(sections[1]!.subarray(at * rowBytes, (at + n) * rowBytes), row * rowBytes);
    got.scales?.set(float32View(sections[2]!).subarray(at * S, (at + n) * S), row * S);
    if (got.weights) {
      got.idx.set(int32View(sections[3]!).subarray(at * k, (at + n) * k), row * k);
      got.weights.set(float32View(sections[4]!).subarray(at * k, (at + n) * k), row * k);
    }
    row += n;
  }
  return got;
}
