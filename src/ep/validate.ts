/**
 * Argument checks of the EP buffer API: pure functions of the config and the
 * arguments, shared by both backends (the facade runs them before any rank
 * communicates). Shapes, dtypes, devices and limits are checked for every
 * tensor; values (topkIdx ranges, layout contents) only for host tensors,
 * since the cuda backend checks device tensors on the device.
 */
import { Event } from '../cuda/event.js';
import { Stream } from '../cuda/stream.js';
import { WideepError, assertInteger, describeValue, invalidArg } from '../errors.js';
import { expectDType } from '../tensor/checks.js';
import { Tensor, type Device } from '../tensor/tensor.js';
import type { DType } from '../tensor/dtype.js';
import type { DispatchRouting, LowLatencyRouting } from './backend.js';
import { FP8_BLOCK } from './fp8-quant.js';
import { computeDispatchLayout, readTopkIdx } from './dispatch-layout.js';
import { checkTimeoutMs } from './transport.js';
import type {
  CombineOptions,
  DispatchOptions,
  EpBackendKind,
  EpBufferOptions,
  EpConfig,
  LowLatencyCombineOptions,
  LowLatencyDispatchOptions,
  StreamOptions,
} from './types.js';

export const DEFAULT_MAX_TOPK = 16;
/** SMs of the normal-mode kernels when a call names none (DeepEP's default budget). */
export const DEFAULT_NUM_SMS = 24;
export const DEFAULT_NUM_RECV_SLOTS = 2;
export const DEFAULT_TIMEOUT_MS = 100_000;
export const MAX_LOW_LATENCY_TOKENS = 1024;

// ---- options ----------------------------------------------------------------

export function resolveConfig(rank: number, worldSize: number, backend: EpBackendKind, options: EpBufferOptions): EpConfig {
  const where = 'EpBuffer.create: options';
  const int = (name: string, v: unknown, min: number, max?: number) => assertInteger(`${where}.${name}`, v, min, max);
  const hidden = int('hidden', options.hidden, 8);
  if (hidden % 8 !== 0) throw invalidArg(`${where}.hidden`, 'a multiple of 8 (rows of 16-byte units)', hidden);
  const numExperts = int('numExperts', options.numExperts, 1);
  if (numExperts % worldSize !== 0) {
    throw new WideepError('ERR_INVALID_ARG', `${where}.numExperts: expected a multiple of the world size ${worldSize}, got ${numExperts}`);
  }
  const ranksPerNode = int('ranksPerNode', options.ranksPerNode ?? worldSize, 1, worldSize);
  if (worldSize % ranksPerNode !== 0) {
    throw new WideepError('ERR_INVALID_ARG', `${where}.ranksPerNode: expected a divisor of the world size ${worldSize} (equal nodes), got ${ranksPerNode}`);
  }
  const ll = options.lowLatency;
  if (ll !== undefined && (typeof ll !== 'object' || ll === null)) throw invalidArg(`${where}.lowLatency`, 'an object { maxTokensPerRank }', ll);
  if (options.backend !== undefined && options.backend !== 'cpu' && options.backend !== 'cuda') {
    throw invalidArg(`${where}.backend`, "'cpu' or 'cuda'", options.backend);
  }
  return {
    rank,
    worldSize,
    backend,
    hidden,
    numExperts,
    numLocalExperts: numExperts / worldSize,
    maxTokensPerRank: int('maxTokensPerRank', options.maxTokensPerRank, 1),
    maxTopk: int('maxTopk', options.maxTopk ?? DEFAULT_MAX_TOPK, 1),
    numRecvSlots: int('numRecvSlots', options.numRecvSlots ?? DEFAULT_NUM_RECV_SLOTS, 1),
    lowLatency: ll === undefined ? undefined : { maxTokensPerRank: int('lowLatency.maxTokensPerRank', ll.maxTokensPerRank, 1, MAX_LOW_LATENCY_TOKENS) },
    timeoutMs: checkTimeoutMs(`${where}.timeoutMs`, options.timeoutMs ?? DEFAULT_TIMEOUT_MS),
    device: options.device === undefined ? undefined : int('device', options.device, 0),
    ranksPerNode,
  };
}

type Shared = number | string | null;

/** The options every rank must agree on, in the order they are compared, with a hint where one helps. */
const SHARED: readonly [string, (c: EpConfig) => Shared, string?][] = [
  [
    'backend',
    (c) => c.backend,
    'a rank whose process group has no GPU defaults to cpu: give each rank a GPU (or pin ranks with WIDEEP_DEVICE), or pass backend explicitly',
  ],
  ['hidden', (c) => c.hidden],
  ['numExperts', (c) => c.numExperts],
  ['maxTokensPerRank', (c) => c.maxTokensPerRank],
  ['maxTopk', (c) => c.maxTopk],
  ['lowLatency.maxTokensPerRank', (c) => c.lowLatency?.maxTokensPerRank ?? null],
  ['numRecvSlots', (c) => c.numRecvSlots],
  ['ranksPerNode', (c) => c.ranksPerNode],
];

export function sharedOptions(config: EpConfig): Shared[] {
  return SHARED.map(([, get]) => get(config));
}

/** Throws ERR_INVALID_ARG naming the first option on which some rank differs from this one. */
export function checkSharedOptions(rank: number, all: readonly (readonly Shared[])[]): void {
  const mine = all[rank]!;
  const show = (v: Shared | undefined) => (v === null || v === undefined ? 'unset' : String(v));
  for (let i = 0; i < SHARED.length; i++) {
    const other = all.findIndex((values) => values[i] !== mine[i]);
    if (other >= 0) {
      const [name, , hint] = SHARED[i]!;
      throw new WideepError(
        'ERR_INVALID_ARG',
        `EpBuffer.create: option ${name} differs between ranks: this rank (${rank}) has ${show(mine[i])}, rank ${other} has ${show(all[other]![i])}` +
          (hint ? `; ${hint}` : ''),
      );
    }
  }
}

// ---- tensors ----------------------------------------------------------------

type Dim = readonly [label: string, size: number];

/**
 * A GPU buffer's stream and previousEvent: open, and on its device. Checked
 * here, before any lease is taken, so that a wrong one cannot fail a call
 * halfway (a handle consumed, or the low-latency halves out of step with the
 * peers'). The cpu backend has no streams and ignores them.
 */
export function checkStreamOptions(where: string, device: Device, o: StreamOptions): void {
  if (device === 'cpu') return;
  const gpu = Number(device.slice('cuda:'.length));
  for (const [name, v, kind] of [
    ['stream', o.stream, Stream],
    ['previousEvent', o.previousEvent, Event],
  ] as const) {
    if (v === undefined) continue;
    if (!(v instanceof kind)) throw invalidArg(`${where}: ${name}`, `a ${kind.name}`, v);
    if (v.closed) throw new WideepError('ERR_CLOSED', `${where}: ${name} is closed`);
    if (v.device !== gpu) throw new WideepError('ERR_INVALID_ARG', `${where}: ${name}: expected one on cuda:${gpu}, got one on cuda:${v.device}`);
  }
}

/** Whether the call is being enqueued into a CUDA-graph capture (only on a stream the caller passed). */
function capturing(o: StreamOptions): boolean {
  return o.stream?.isCapturing() === true;
}

/** The optional bf16 [T, H] output tensor a combine writes into. */
function optionalOut(where: string, out: unknown, device: Device, T: number, H: number): Tensor | undefined {
  if (out === undefined) return undefined;
  const t = tensorOf(where, 'out', out, device, ['bf16'], ['T', 'H']);
  checkShape(where, 'out', t, [['T', T], ['H', H]]);
  return t;
}

export function requireOptions(where: string, v: unknown): void {
  if (typeof v !== 'object' || v === null) throw invalidArg(`${where}: options`, 'an options object', v);
}

export function requireTensor(where: string, name: string, v: unknown, device: Device): Tensor {
  if (!(v instanceof Tensor)) throw invalidArg(`${where}: ${name}`, 'a Tensor', v);
  if (v.closed) throw new WideepError('ERR_CLOSED', `${where}: ${name} is closed`);
  if (v.device !== device) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: ${name}: expected a tensor on ${device} (this buffer's device), got one on ${v.device}`);
  }
  return v;
}

function showDims(dims: readonly Dim[]): string {
  return `[${dims.map(([, n]) => n).join(', ')}] ([${dims.map(([l]) => l).join(', ')}])`;
}

export function checkShape(where: string, name: string, t: Tensor, dims: readonly Dim[]): void {
  if (t.ndim !== dims.length || dims.some(([, n], i) => t.shape[i] !== n)) {
    throw new WideepError('ERR_SHAPE', `${where}: ${name}: expected shape ${showDims(dims)}, got [${t.shape.join(', ')}]`);
  }
}

function checkRank(where: string, name: string, t: Tensor, labels: readonly string[]): void {
  if (t.ndim !== labels.length) {
    throw new WideepError('ERR_SHAPE', `${where}: ${name}: expected a ${labels.length}-d tensor [${labels.join(', ')}], got shape [${t.shape.join(', ')}]`);
  }
}

function tensorOf(where: string, name: string, v: unknown, device: Device, dtypes: readonly DType[], labels: readonly string[]): Tensor {
  const t = requireTensor(where, name, v, device);
  expectDType(where, name, t, dtypes);
  checkRank(where, name, t, labels);
  // Rows (…, H) and their scales (…, H/128) move as 16-byte vectors on the GPU;
  // a misaligned view would fault there and take the context down.
  if (device !== 'cpu' && labels.at(-1)!.startsWith('H') && t.ptr % 16n !== 0n) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: ${name}: device rows must start on a 16-byte boundary; this view starts ${t.ptr % 16n} bytes past one`);
  }
  return t;
}

/** Row width rules: 16-byte rows, within the buffer's hidden, whole fp8 blocks. */
export function checkRowWidth(where: string, name: string, h: number, config: EpConfig, fp8: boolean): void {
  if (h % 8 !== 0) throw new WideepError('ERR_SHAPE', `${where}: ${name}: expected a row width H that is a multiple of 8, got H = ${h}`);
  if (h > config.hidden) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: ${name}: row width H = ${h} exceeds the buffer's hidden = ${config.hidden}`);
  }
  if (fp8 && h % FP8_BLOCK !== 0) {
    throw new WideepError('ERR_SHAPE', `${where}: ${name}: fp8 rows need a row width H that is a multiple of ${FP8_BLOCK}, got H = ${h}`);
  }
}

function checkTopk(where: string, k: number, config: EpConfig): void {
  if (k < 1) throw new WideepError('ERR_SHAPE', `${where}: topkIdx: expected k >= 1 columns, got k = ${k}`);
  if (k > config.maxTopk) throw new WideepError('ERR_INVALID_ARG', `${where}: topkIdx: k = ${k} exceeds the buffer's maxTopk = ${config.maxTopk}`);
}

function checkNumExperts(where: string, v: unknown, config: EpConfig, required: boolean): void {
  if (v === undefined && !required) return;
  if (v !== config.numExperts) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: numExperts: expected the buffer's numExperts = ${config.numExperts}, got ${describeValue(v)}`);
  }
}

function optionalBool(where: string, name: string, v: unknown, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw invalidArg(`${where}: ${name}`, 'a boolean', v);
  return v;
}

function optionalInt(where: string, name: string, v: unknown, fallback: number | undefined, min: number, max?: number): number | undefined {
  return v === undefined ? fallback : assertInteger(`${where}: ${name}`, v, min, max);
}

/** Host tensors only: every entry is -1 or an expert id in [0, E). */
export function checkTopkIdxValues(where: string, topkIdx: Tensor, numExperts: number): void {
  if (!topkIdx.isHost) return;
  const k = topkIdx.shape[1]!;
  const data = topkIdx.data as Int32Array | BigInt64Array;
  for (let i = 0; i < data.length; i++) {
    const v = Number(data[i]!);
    if (v < -1 || v >= numExperts) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `${where}: topkIdx[${Math.floor(i / k)}, ${i % k}] = ${data[i]} is not an expert id: expected -1 or a value in [0, ${numExperts}) (numExperts = ${numExperts})`,
      );
    }
  }
}

// ---- getDispatchLayout ------------------------------------------------------

export function validateLayoutArgs(config: EpConfig, device: Device, topkIdx: unknown, numExperts: unknown, options: StreamOptions): Tensor {
  const where = 'getDispatchLayout';
  checkStreamOptions(where, device, options);
  if (capturing(options)) {
    throw new WideepError('ERR_UNSUPPORTED', `${where}: not during a CUDA-graph capture: its outputs would be allocated inside the graph`);
  }
  const t = tensorOf(where, 'topkIdx', topkIdx, device, ['i32', 'i64'], ['T', 'k']);
  checkNumExperts(where, numExperts, config, false);
  checkTopk(where, t.shape[1]!, config);
  if (t.shape[0]! > config.maxTokensPerRank) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: topkIdx: T = ${t.shape[0]} tokens exceeds the buffer's maxTokensPerRank = ${config.maxTokensPerRank}`);
  }
  checkTopkIdxValues(where, t, config.numExperts);
  return t;
}

// ---- dispatch -----------------------------------------------------------------

export interface ValidDispatch {
  x: Tensor;
  xScales: Tensor | undefined;
  topkIdx: Tensor | undefined;
  topkWeights: Tensor | undefined;
  layout: { numTokensPerRank: Tensor; numTokensPerExpert: Tensor; isTokenInRank: Tensor } | undefined;
  expertAlignment: number;
  numWorstTokens: number;
  numSms: number | undefined;
}

/**
 * `cached` is the routing of args.handle, which the caller has already checked (owner, liveness).
 * maxNumSms: the device's SM count where the backend needs every block of a kernel resident (cuda).
 */
export function validateDispatch(
  config: EpConfig,
  device: Device,
  args: DispatchOptions,
  cached: DispatchRouting | undefined,
  maxNumSms?: number,
): ValidDispatch {
  const where = 'dispatch';
  requireOptions(where, args);
  checkStreamOptions(where, device, args);
  const x = tensorOf(where, 'x', args.x, device, ['bf16', 'fp8e4m3'], ['T', 'H']);
  const [T, H] = x.shape as [number, number];
  const fp8 = x.dtype === 'fp8e4m3';
  checkRowWidth(where, 'x', H, config, fp8);
  if (T > config.maxTokensPerRank) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: x: T = ${T} tokens exceeds the buffer's maxTokensPerRank = ${config.maxTokensPerRank}`);
  }
  let xScales: Tensor | undefined;
  if (fp8) {
    if (args.xScales === undefined) throw new WideepError('ERR_INVALID_ARG', `${where}: xScales: required with fp8e4m3 x (f32 [${T}, ${H / FP8_BLOCK}]), got undefined`);
    xScales = tensorOf(where, 'xScales', args.xScales, device, ['f32'], ['T', 'H/128']);
    checkShape(where, 'xScales', xScales, [['T', T], ['H/128', H / FP8_BLOCK]]);
  } else if (args.xScales !== undefined) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: xScales: only fp8e4m3 x takes scales, but x is ${x.dtype}`);
  }
  const common = {
    expertAlignment: optionalInt(where, 'expertAlignment', args.expertAlignment, 1, 1)!,
    // A receive slot holds R * maxTokensPerRank rows: no more can arrive, and the outputs view the slot.
    numWorstTokens: optionalInt(where, 'numWorstTokens', args.numWorstTokens, 0, 0, config.worldSize * config.maxTokensPerRank)!,
    numSms: optionalInt(where, 'numSms', args.numSms, undefined, 1, maxNumSms),
  };
  checkNumExperts(where, args.numExperts, config, false);

  if (cached !== undefined) {
    for (const name of ['topkIdx', 'topkWeights', 'layout'] as const) {
      if (args[name] !== undefined) {
        throw new WideepError('ERR_INVALID_ARG', `${where}: ${name}: must be omitted with a handle (the routing comes from the handle), got ${describeValue(args[name])}`);
      }
    }
    if (T !== cached.numTokens) {
      throw new WideepError('ERR_SHAPE', `${where}: x: expected ${cached.numTokens} rows (the handle's token count), got shape [${x.shape.join(', ')}]`);
    }
    if (common.numWorstTokens !== 0 && common.numWorstTokens !== cached.numRows) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `${where}: numWorstTokens: a cached dispatch keeps the handle's ${cached.numRows} output rows; expected 0 or ${cached.numRows}, got ${common.numWorstTokens}`,
      );
    }
    return { x, xScales, topkIdx: undefined, topkWeights: undefined, layout: undefined, ...common };
  }
  if (common.numWorstTokens === 0 && capturing(args)) {
    throw new WideepError(
      'ERR_UNSUPPORTED',
      `${where}: during a CUDA-graph capture a dispatch needs numWorstTokens or a handle: otherwise the host waits for the receive counts, which a capture never produces`,
    );
  }

  if (args.topkIdx === undefined) throw new WideepError('ERR_INVALID_ARG', `${where}: topkIdx: required without a handle, got undefined`);
  const topkIdx = tensorOf(where, 'topkIdx', args.topkIdx, device, ['i32', 'i64'], ['T', 'k']);
  const k = topkIdx.shape[1]!;
  checkShape(where, 'topkIdx', topkIdx, [['T', T], ['k', k]]);
  checkTopk(where, k, config);
  if (args.topkWeights === undefined) throw new WideepError('ERR_INVALID_ARG', `${where}: topkWeights: required without a handle, got undefined`);
  const topkWeights = tensorOf(where, 'topkWeights', args.topkWeights, device, ['f32'], ['T', 'k']);
  checkShape(where, 'topkWeights', topkWeights, [['T', T], ['k', k]]);
  checkTopkIdxValues(where, topkIdx, config.numExperts);
  const layout = args.layout === undefined ? undefined : validateLayout(where, config, device, args.layout, topkIdx);
  return { x, xScales, topkIdx, topkWeights, layout, ...common };
}

function validateLayout(where: string, config: EpConfig, device: Device, layout: unknown, topkIdx: Tensor): NonNullable<ValidDispatch['layout']> {
  if (typeof layout !== 'object' || layout === null) throw invalidArg(`${where}: layout`, 'the object getDispatchLayout returned', layout);
  const l = layout as Record<string, unknown>;
  const T = topkIdx.shape[0]!;
  const R = config.worldSize;
  const perRank = requireTensor(where, 'layout.numTokensPerRank', l.numTokensPerRank, device);
  expectDType(where, 'layout.numTokensPerRank', perRank, ['i32']);
  checkShape(where, 'layout.numTokensPerRank', perRank, [['R', R]]);
  const perExpert = requireTensor(where, 'layout.numTokensPerExpert', l.numTokensPerExpert, device);
  expectDType(where, 'layout.numTokensPerExpert', perExpert, ['i32']);
  checkShape(where, 'layout.numTokensPerExpert', perExpert, [['E', config.numExperts]]);
  const inRank = requireTensor(where, 'layout.isTokenInRank', l.isTokenInRank, device);
  expectDType(where, 'layout.isTokenInRank', inRank, ['u8']);
  checkShape(where, 'layout.isTokenInRank', inRank, [['T', T], ['R', R]]);
  const valid = { numTokensPerRank: perRank, numTokensPerExpert: perExpert, isTokenInRank: inRank };
  let perNode: Tensor | undefined;
  if (l.numTokensPerNode !== undefined) {
    perNode = requireTensor(where, 'layout.numTokensPerNode', l.numTokensPerNode, device);
    expectDType(where, 'layout.numTokensPerNode', perNode, ['i32']);
    checkShape(where, 'layout.numTokensPerNode', perNode, [['nodes', R / config.ranksPerNode]]);
  }
  if (topkIdx.isHost) checkLayoutValues(where, config, { ...valid, numTokensPerNode: perNode }, topkIdx);
  return valid;
}

/** Host tensors: the layout must be the one getDispatchLayout computes for this topkIdx. */
function checkLayoutValues(
  where: string,
  config: EpConfig,
  layout: NonNullable<ValidDispatch['layout']> & { numTokensPerNode: Tensor | undefined },
  topkIdx: Tensor,
): void {
  const T = topkIdx.shape[0]!;
  const k = topkIdx.shape[1]!;
  const want = computeDispatchLayout(readTopkIdx(topkIdx), T, k, config.numExperts, config.worldSize, config.ranksPerNode);
  const fields = [
    ['numTokensPerRank', want.numTokensPerRank],
    ['numTokensPerNode', want.numTokensPerNode],
    ['numTokensPerExpert', want.numTokensPerExpert],
    ['isTokenInRank', want.isTokenInRank],
  ] as const;
  for (const [name, expected] of fields) {
    const got = layout[name]?.data as Int32Array | Uint8Array | undefined;
    if (got === undefined) continue;
    const i = expected.findIndex((v, j) => v !== got[j]);
    if (i >= 0) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `${where}: layout.${name} does not belong to this topkIdx: element ${i} is ${got[i]}, but topkIdx gives ${expected[i]}; ` +
          'pass the layout that getDispatchLayout(topkIdx) returned, or none',
      );
    }
  }
}

// ---- combine ------------------------------------------------------------------

export interface ValidCombine {
  x: Tensor;
  topkWeights: Tensor | undefined;
  bias: Tensor[];
  keepHandle: boolean;
  numSms: number | undefined;
  numSendSms: number | undefined;
  out: Tensor | undefined;
}

/** Whether two tensors' bytes overlap (host tensors: the same buffer range; device: the same addresses). */
function overlaps(a: Tensor, b: Tensor): boolean {
  if (a.isHost !== b.isHost) return false;
  if (a.isHost) {
    const x = a.data;
    const y = b.data;
    return x.buffer === y.buffer && x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
  }
  const pa = a.ptr;
  const pb = b.ptr;
  return pa < pb + BigInt(b.byteLength) && pb < pa + BigInt(a.byteLength);
}

/** maxNumSms: as for validateDispatch. */
export function validateCombine(config: EpConfig, device: Device, args: CombineOptions, routing: DispatchRouting, maxNumSms?: number): ValidCombine {
  const where = 'combine';
  requireOptions(where, args);
  checkStreamOptions(where, device, args);
  const N = routing.numRows;
  const x = tensorOf(where, 'x', args.x, device, ['bf16'], ['N', 'H']);
  const H = x.shape[1]!;
  checkShape(where, 'x', x, [['N (rows of the handle\'s dispatch)', N], ['H', H]]);
  checkRowWidth(where, 'x', H, config, false);
  let topkWeights: Tensor | undefined;
  if (args.topkWeights !== undefined) {
    topkWeights = tensorOf(where, 'topkWeights', args.topkWeights, device, ['f32'], ['N', 'k']);
    checkShape(where, 'topkWeights', topkWeights, [['N', N], ['k', routing.topk]]);
  }
  const T = routing.numTokens;
  const biasList: unknown[] = args.bias === undefined ? [] : Array.isArray(args.bias) ? (args.bias as unknown[]) : [args.bias];
  if (biasList.length > 2 || (Array.isArray(args.bias) && biasList.length !== 2)) {
    throw invalidArg(`${where}: bias`, 'a bf16 [T, H] tensor or a pair of them', args.bias);
  }
  const bias = biasList.map((b, i) => {
    const name = Array.isArray(args.bias) ? `bias[${i}]` : 'bias';
    const t = tensorOf(where, name, b, device, ['bf16'], ['T', 'H']);
    checkShape(where, name, t, [['T', T], ['H', H]]);
    return t;
  });
  const out = optionalOut(where, args.out, device, T, H);
  // The kernel writes out while it still reads x.
  if (out && overlaps(out, x)) throw new WideepError('ERR_INVALID_ARG', `${where}: out: must not share memory with x`);
  if ((out === undefined || topkWeights !== undefined) && capturing(args)) {
    throw new WideepError(
      'ERR_UNSUPPORTED',
      `${where}: during a CUDA-graph capture pass out and no topkWeights: otherwise the outputs would be allocated inside the graph, which could not be replayed while they are alive`,
    );
  }
  if (capturing(args) && !args.keepHandle && !routing.captured) {
    throw new WideepError(
      'ERR_UNSUPPORTED',
      `${where}: a captured combine that ends its handle frees its dispatch's routing, which the graph reads at every replay: capture the dispatch with it, or pass keepHandle and keep the handle while the graph lives`,
    );
  }
  const numSms = optionalInt(where, 'numSms', args.numSms, undefined, 1, maxNumSms);
  const numSendSms = optionalInt(where, 'numSendSms', args.numSendSms, undefined, 1);
  if (numSendSms !== undefined && numSendSms >= (numSms ?? DEFAULT_NUM_SMS)) {
    throw invalidArg(`${where}: numSendSms`, `fewer than numSms (${numSms ?? DEFAULT_NUM_SMS}): the other SMs reduce`, numSendSms);
  }
  return {
    x,
    topkWeights,
    bias,
    keepHandle: optionalBool(where, 'keepHandle', args.keepHandle, false),
    numSms,
    numSendSms,
    out,
  };
}

// ---- low-latency ----------------------------------------------------------------

/** What the backend is given; the stream options are checked (checkStreamOptions) and passed through. */
export interface ValidLowLatencyDispatch extends StreamOptions {
  x: Tensor;
  topkIdx: Tensor;
  useFp8: boolean;
  roundScale: boolean;
  returnRecvHook: boolean;
  cumulativeRecvStats: Tensor | undefined;
}

function lowLatencyTokens(where: string, config: EpConfig): number {
  if (config.lowLatency === undefined) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: this EpBuffer was created without options.lowLatency; pass lowLatency: { maxTokensPerRank } to EpBuffer.create`);
  }
  return config.lowLatency.maxTokensPerRank;
}

/** Checks that the buffer has low-latency mode (for cleanLowLatencyBuffer). */
export function requireLowLatency(where: string, config: EpConfig): void {
  lowLatencyTokens(where, config);
}

export function validateLowLatencyDispatch(config: EpConfig, device: Device, args: LowLatencyDispatchOptions): ValidLowLatencyDispatch {
  const where = 'lowLatencyDispatch';
  const M = lowLatencyTokens(where, config);
  requireOptions(where, args);
  checkStreamOptions(where, device, args);
  if (args.maxTokensPerRank !== M) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `${where}: maxTokensPerRank: expected the buffer's lowLatency.maxTokensPerRank = ${M}, got ${describeValue(args.maxTokensPerRank)}`,
    );
  }
  checkNumExperts(where, args.numExperts, config, true);
  const useFp8 = optionalBool(where, 'useFp8', args.useFp8, true);
  const x = tensorOf(where, 'x', args.x, device, ['bf16'], ['T', 'H']);
  const [T, H] = x.shape as [number, number];
  checkRowWidth(where, 'x', H, config, false);
  if (useFp8 && H % FP8_BLOCK !== 0) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: useFp8 needs a row width H that is a multiple of ${FP8_BLOCK}, got H = ${H}; pass useFp8: false for bf16 rows`);
  }
  if (T > M) throw new WideepError('ERR_INVALID_ARG', `${where}: x: T = ${T} tokens exceeds maxTokensPerRank = ${M}`);
  const topkIdx = tensorOf(where, 'topkIdx', args.topkIdx, device, ['i32', 'i64'], ['T', 'k']);
  checkShape(where, 'topkIdx', topkIdx, [['T', T], ['k', topkIdx.shape[1]!]]);
  checkTopk(where, topkIdx.shape[1]!, config);
  let stats: Tensor | undefined;
  if (args.cumulativeRecvStats !== undefined) {
    stats = requireTensor(where, 'cumulativeRecvStats', args.cumulativeRecvStats, device);
    expectDType(where, 'cumulativeRecvStats', stats, ['i32']);
    checkShape(where, 'cumulativeRecvStats', stats, [['L', config.numLocalExperts]]);
  }
  const valid = {
    x,
    topkIdx,
    useFp8,
    roundScale: optionalBool(where, 'roundScale', args.roundScale, false),
    returnRecvHook: optionalBool(where, 'returnRecvHook', args.returnRecvHook, false),
    cumulativeRecvStats: stats,
    previousEvent: args.previousEvent,
    stream: args.stream,
  };
  checkTopkIdxValues(where, topkIdx, config.numExperts);
  return valid;
}

export interface ValidLowLatencyCombine<L extends LowLatencyRouting = LowLatencyRouting> extends StreamOptions {
  routing: L;
  y: Tensor;
  topkIdx: Tensor;
  topkWeights: Tensor;
  returnRecvHook: boolean;
  out: Tensor | undefined;
}

export function validateLowLatencyCombine<L extends LowLatencyRouting>(
  config: EpConfig,
  device: Device,
  args: LowLatencyCombineOptions,
  routing: L,
): ValidLowLatencyCombine<L> {
  const where = 'lowLatencyCombine';
  requireOptions(where, args);
  checkStreamOptions(where, device, args);
  const M = lowLatencyTokens(where, config);
  const L = config.numLocalExperts;
  const y = tensorOf(where, 'y', args.y, device, ['bf16'], ['L', 'R*M', 'H']);
  const H = y.shape[2]!;
  checkShape(where, 'y', y, [['L', L], ['R*M', config.worldSize * M], ['H', H]]);
  checkRowWidth(where, 'y', H, config, false);
  const T = routing.numTokens;
  const topkIdx = tensorOf(where, 'topkIdx', args.topkIdx, device, ['i32', 'i64'], ['T', 'k']);
  // The kernels look the dispatch's columns up with the combine's k.
  const k = routing.topk;
  checkShape(where, 'topkIdx', topkIdx, [["T (the handle's token count)", T], ["k (the handle's top-k)", k]]);
  const topkWeights = tensorOf(where, 'topkWeights', args.topkWeights, device, ['f32'], ['T', 'k']);
  checkShape(where, 'topkWeights', topkWeights, [['T', T], ['k', k]]);
  const out = optionalOut(where, args.out, device, T, H);
  if (out === undefined && capturing(args)) {
    throw new WideepError(
      'ERR_UNSUPPORTED',
      `${where}: during a CUDA-graph capture pass out: otherwise combinedX would be allocated inside the graph, which could not be replayed while it is alive`,
    );
  }
  // DeepEP's zero_copy skips copying y into its send buffer; this combine reads y where it lies, so there is nothing to skip.
  if ((args as { zeroCopy?: unknown }).zeroCopy !== undefined) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `${where}: zeroCopy: no such option: the combine always reads y in place (the experts may write it anywhere), so there is no copy to skip; remove it`,
    );
  }
  const valid = {
    routing,
    y,
    topkIdx,
    topkWeights,
    returnRecvHook: optionalBool(where, 'returnRecvHook', args.returnRecvHook, false),
    out,
    previousEvent: args.previousEvent,
    stream: args.stream,
  };
  checkTopkIdxValues(where, topkIdx, config.numExperts);
  return valid;
}
