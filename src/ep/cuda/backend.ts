/**
 * The cuda backend: NVLink dispatch/combine kernels over buffers mapped
 * between the ranks' processes with CUDA IPC (handles exchanged through the
 * store). Received rows are views into the registered buffer; a receive slot
 * stays valid until the slot is reused, after which its old views are closed.
 */
import { callNative } from '../../cuda/call.js';
import { cudaProbe } from '../../cuda/device.js';
import { memsetDevice, type DeviceStorage } from '../../cuda/memory.js';
import { Event } from '../../cuda/event.js';
import { Stream } from '../../cuda/stream.js';
import type { ProcessGroup } from '../../runtime/types.js';
import { WideepError } from '../../errors.js';
import { requireCuda, type NativeEpBatonLayout, type NativeEpBuffer, type NativeEvent, type NativeStream } from '../../native/index.js';
import { itemSize, type DType } from '../../tensor/dtype.js';
import { Tensor, type Device } from '../../tensor/tensor.js';
import type {
  BackendCombineArgs,
  BackendCombineResult,
  BackendDispatchArgs,
  BackendDispatchResult,
  BackendLowLatencyCombineArgs,
  BackendLowLatencyCombineResult,
  BackendLowLatencyDispatchArgs,
  BackendLowLatencyDispatchResult,
  CreateCudaBackend,
  DispatchRouting,
  EpBackend,
  LowLatencyRouting,
} from '../backend.js';
import type { DataCallKind, EpCall } from '../calls.js';
import type { EpConfig, StreamOptions } from '../types.js';
import { DEFAULT_NUM_SMS } from '../validate.js';
import { Baton } from './batons.js';
import { FP8_BLOCK } from '../fp8-quant.js';
import { CONTROL_BYTES, computeCudaLayout, type CudaLayout } from './buffer-layout.js';
import { epStatusError, type CallRecord } from './status.js';
import { StreamOrder, acquireLowLatencyOrder, releaseLowLatencyOrder } from './stream-order.js';
import { StoreTransport, agreeNoLowLatencyResults } from '../transport.js';

/**
 * WIDEEP_POISON_OUTPUTS=1 (set by the GPU tests) fills receive regions and
 * fresh outputs with 0xff before every launch, so rows a kernel fails to
 * write show up instead of hiding behind stale correct data.
 */
const POISON = process.env.WIDEEP_POISON_OUTPUTS === '1';
const POISON_BYTE = 0xff;

interface CudaRouting extends DispatchRouting {
  readonly meta: Tensor;
  readonly sendPos: Tensor;
  readonly idx64: boolean;
  /** The stream of the last dispatch or combine that read it: its tensors are freed there. */
  lastStream: Stream;
}

type CudaLowLatencyRouting = LowLatencyRouting;

/** The low-latency regions a result views. */
const LL_VIEWS = ['llRecvX', 'llRecvScales', 'llRecvCount', 'llSrcInfo', 'llLayoutRange'] as const;
type LowLatencyView = (typeof LL_VIEWS)[number];

/** The native launches of one low-latency operation (see #launchLowLatency). */
interface LowLatencyLaunches {
  /** Send and receive in one launch; records the event unless capturing, returns whether it did. */
  fused(baton: BigInt64Array, stream: NativeStream, event: NativeEvent): boolean;
  send(baton: BigInt64Array, stream: NativeStream, event: NativeEvent): boolean;
  recv(baton: BigInt64Array, stream: NativeStream, event: NativeEvent): boolean;
}

/** Event keys and call records per low-latency half, made once rather than per call. */
const LL_DISPATCH_EVENTS = ['lowLatencyDispatch0', 'lowLatencyDispatch1'];
const LL_COMBINE_EVENTS = ['lowLatencyCombine0', 'lowLatencyCombine1'];
const LL_DISPATCH_RECORDS: readonly CallRecord[] = [
  { kind: 2, index: 0 },
  { kind: 2, index: 1 },
];
const LL_COMBINE_RECORDS: readonly CallRecord[] = [
  { kind: 3, index: 0 },
  { kind: 3, index: 1 },
];

/** An Event whose done() also reports failures the EP kernels recorded. */
class EpEvent extends Event {
  readonly #check: () => void;
  // Timed, so that callers can measure up to an EP call with the event it returns.
  constructor(device: number, check: () => void) {
    super(device, { timing: true });
    this.#check = check;
  }
  override async done(): Promise<void> {
    await super.done();
    this.#check();
  }
}

/** A range of the registered buffer; its views close once the range is reused or the buffer closes. */
class RegionStorage implements DeviceStorage {
  constructor(
    readonly device: number,
    readonly ptr: bigint,
    readonly byteLength: number,
    private readonly isStale: () => boolean,
  ) {}
  get closed(): boolean {
    return this.isStale();
  }
  close(): void {
    // The backend owns the memory; a view has nothing to free.
  }
}

function signature(hidden: number, topk: number, elemBytes: number, hasScales: boolean): number {
  return ((hidden << 8) ^ (topk << 3) ^ (elemBytes << 1) ^ (hasScales ? 1 : 0)) | 0;
}

let instances = 0;

class CudaEpBackend implements EpBackend<CudaRouting, CudaLowLatencyRouting> {
  readonly kind = 'cuda' as const;
  readonly device: Device;
  /** The device's SM count: the most SMs a normal-mode call may name; the low-latency kernels take them all. */
  readonly maxNumSms: number;
  readonly #dev: number;
  readonly #config: EpConfig;
  readonly #group: ProcessGroup;
  readonly #prefix: string;
  readonly #native: NativeEpBuffer;
  readonly #llDispatchLaunches: LowLatencyLaunches;
  readonly #llCombineLaunches: LowLatencyLaunches;
  readonly #base: bigint;
  readonly #layout: CudaLayout;
  readonly #stream: Stream;
  readonly #metaBytes: number;
  readonly #notify: Baton;
  readonly #dispatch: Baton;
  readonly #combine: Baton;
  readonly #ll: Baton;
  /** Generation of each normal slot and low-latency half; bumped when new data lands there. */
  readonly #slotGen: number[];
  readonly #halfGen = [0, 0];
  /** Addresses of the low-latency regions results view, per half. */
  readonly #halfPtrs: Record<LowLatencyView, bigint>[];
  readonly #countsEvents: Event[];
  readonly #events = new Map<string, EpEvent>();
  /** This buffer's operations, in the order they were enqueued. */
  readonly #order: StreamOrder;
  /** Every buffer's low-latency launches on this GPU, in the order they were enqueued. */
  readonly #lowLatencyOrder: StreamOrder;
  /** Where the ranks agree that cleanLowLatencyBuffer may go ahead. */
  readonly #verdicts: StoreTransport;
  #closed = false;

  constructor(group: ProcessGroup, config: EpConfig, native: NativeEpBuffer, layout: CudaLayout, batons: NativeEpBatonLayout, prefix: string) {
    this.#dev = config.device!;
    this.device = `cuda:${this.#dev}`;
    this.#config = config;
    this.#group = group;
    this.#prefix = prefix;
    this.#native = native;
    this.#llDispatchLaunches = {
      fused: (b, s, e) => native.lowLatencyDispatch(b, s, e),
      send: (b, s, e) => native.lowLatencyDispatchSend(b, s, e),
      recv: (b, s, e) => native.lowLatencyDispatchRecv(b, s, e),
    };
    this.#llCombineLaunches = {
      fused: (b, s, e) => native.lowLatencyCombine(b, s, e),
      send: (b, s, e) => native.lowLatencyCombineSend(b, s, e),
      recv: (b, s, e) => native.lowLatencyCombineRecv(b, s, e),
    };
    this.#base = native.base;
    this.#layout = layout;
    this.#stream = new Stream(this.#dev);
    this.#order = new StreamOrder(() => new Event(this.#dev));
    this.#lowLatencyOrder = acquireLowLatencyOrder(this.#dev);
    this.#verdicts = new StoreTransport(group.store, config.rank, config.worldSize, `${prefix}/clean-verdict`);
    this.maxNumSms = cudaProbe().devices[this.#dev]?.multiProcessorCount ?? 132;
    this.#metaBytes = batons.routingMetaBytes;
    this.#notify = new Baton(batons.notify);
    this.#dispatch = new Baton(batons.dispatch);
    this.#combine = new Baton(batons.combine);
    this.#ll = new Baton(batons.lowLatency);
    this.#slotGen = new Array<number>(config.numRecvSlots).fill(0);
    this.#halfPtrs = [0, 1].map(
      (half) => Object.fromEntries(LL_VIEWS.map((f) => [f, this.#addr(this.#halfOffset(half, f))])) as Record<LowLatencyView, bigint>,
    );
    this.#countsEvents = Array.from({ length: config.numRecvSlots }, () => new Event(this.#dev));
  }

  // ---- helpers --------------------------------------------------------------------

  /**
   * Throws the buffer's error (which ends it), then, for `record`, the
   * verdict of the last call of that kind and slot or half: a call a peer
   * refused, which failed on every rank alone.
   */
  #check(record?: CallRecord): void {
    const s = this.#native.readStatus();
    if (s) throw epStatusError(s, this.#config.rank);
    const verdict = record && this.#native.readCallStatus(record.kind, record.index);
    if (verdict) throw epStatusError(verdict, this.#config.rank);
  }

  /**
   * The operation's stream (validation has checked it: checkStreamOptions),
   * ordered after this buffer's previous operations, whatever their streams:
   * they share the buffer's slots and counters, and each takes whole SMs
   * waiting for its peers, so they must run in the order they were enqueued.
   */
  #streamFor(o: StreamOptions): Stream {
    const s = o.stream ?? this.#stream;
    if (o.previousEvent) s.waitEvent(o.previousEvent);
    this.#order.follow(s);
    return s;
  }

  /**
   * The event recorded after an operation. One per operation kind and slot,
   * re-recorded each time (creating events costs more than the launches):
   * a result's event stays valid until its slot is used again. None during a
   * graph capture: a captured event must outlive the graph, and the graph's
   * own launch is what callers wait on.
   */
  #event(key: string, s: Stream, record?: CallRecord): EpEvent | undefined {
    if (s.isCapturing()) return undefined;
    const e = this.#eventOf(key, record).record(s) as EpEvent;
    this.#order.done(e);
    return e;
  }

  /** The event of #event, unrecorded: the low-latency launches record it themselves. */
  #eventOf(key: string, record?: CallRecord): EpEvent {
    let e = this.#events.get(key);
    if (!e) {
      e = new EpEvent(this.#dev, () => this.#check(record));
      this.#events.set(key, e);
    }
    return e;
  }

  /** A view at address `ptr` of the registered buffer, valid while `gen()` stays `at`. */
  #view(ptr: bigint, dtype: DType, shape: number[], gen: () => number): Tensor {
    const at = gen();
    const bytes = shape.reduce((a, b) => a * b, 1) * itemSize(dtype);
    const storage = new RegionStorage(this.#dev, ptr, bytes, () => this.#closed || gen() !== at);
    return Tensor.fromDeviceStorage(storage, dtype, shape, 0, false);
  }

  /** The address of byte `offset` of the registered buffer. */
  #addr(offset: number): bigint {
    return this.#base + BigInt(offset);
  }

  #slotOffset(slot: number, field: string): number {
    const f = this.#layout.fields;
    return f.slab0! + slot * f.slabStride! + f[field]!;
  }

  #halfOffset(half: number, field: string): number {
    const f = this.#layout.fields;
    return f.llHalf0! + half * f.llHalfStride! + f[field]!;
  }

  /** In poison mode, fills `bytes` at `offset` of the registered buffer. */
  #poisonRegion(offset: number, bytes: number, s: Stream): void {
    if (POISON && bytes > 0) memsetDevice(this.#addr(offset), POISON_BYTE, bytes, s);
  }

  #poisonTensor<T extends Tensor | undefined>(t: T, s: Stream): T {
    if (POISON && t) t.fillBytes(POISON_BYTE, s);
    return t;
  }

  #ptr(t: Tensor | undefined): bigint {
    return t ? t.ptr : 0n;
  }

  // ---- normal mode ----------------------------------------------------------------

  getDispatchLayout(topkIdx: Tensor, options: StreamOptions) {
    const s = this.#streamFor(options);
    const T = topkIdx.shape[0]!;
    const R = this.#config.worldSize;
    const on = { device: this.device, stream: s };
    const numTokensPerRank = Tensor.empty([R], 'i32', on);
    const numTokensPerExpert = Tensor.empty([this.#config.numExperts], 'i32', on);
    const isTokenInRank = Tensor.empty([T, R], 'u8', on);
    const scratch = Tensor.empty([Math.max(T, 1), R], 'i32', on);
    this.#notify
      .reset()
      .set('topkIdx', topkIdx.ptr)
      .set('idx64', topkIdx.dtype === 'i64')
      .set('numTokens', T)
      .set('topk', topkIdx.shape[1]!)
      .set('expertAlignment', 1)
      .set('layoutOnly', 1)
      .set('sendPos', scratch.ptr)
      .set('numTokensPerRank', numTokensPerRank.ptr)
      .set('numTokensPerExpert', numTokensPerExpert.ptr)
      .set('isTokenInRank', isTokenInRank.ptr)
      .set('countsSlot', -1)
      .set('slot', -1);
    callNative(() => this.#native.notify(this.#notify.array, s.native));
    scratch.close();
    const event = this.#event('layout', s);
    return event ? { numTokensPerRank, numTokensPerExpert, isTokenInRank, event } : { numTokensPerRank, numTokensPerExpert, isTokenInRank };
  }

  /** Enqueues both kernels before it returns; the promise waits for the receive counts when it needs them. */
  dispatch(args: BackendDispatchArgs<CudaRouting>, slot: number, call: EpCall): Promise<BackendDispatchResult<CudaRouting>> {
    const s = this.#streamFor(args);
    const { x, xScales, topkIdx, topkWeights, cached } = args;
    const T = x.shape[0]!;
    const H = x.shape[1]!;
    const R = this.#config.worldSize;
    const fp8 = x.dtype === 'fp8e4m3';
    const elemBytes = fp8 ? 1 : 2;
    const k = cached ? 0 : topkIdx!.shape[1]!;
    const idx64 = cached ? cached.idx64 : topkIdx!.dtype === 'i64';
    const numWorst = cached ? (cached.numRecvTokens < 0 ? cached.numRows : 0) : args.numWorstTokens;
    const needCounts = !cached && numWorst === 0;
    const on = { device: this.device, stream: s };
    const meta = cached?.meta ?? Tensor.empty([this.#metaBytes], 'u8', on);
    const sendPos = cached?.sendPos ?? Tensor.empty([Math.max(T, 1), R], 'i32', on);
    // A new routing's tensors, freed on `s` (after the kernels that read them) if the call fails.
    const dropRouting = () => {
      if (cached) return;
      meta.close(s);
      sendPos.close(s);
    };
    try {
      // Peers write into this slot only after our notify, so this fill comes first.
      this.#poisonRegion(this.#slotOffset(slot, 'slabX'), this.#layout.fields.slabStride!, s);
      this.#notify
        .reset()
        .set('topkIdx', this.#ptr(topkIdx))
        .set('idx64', idx64)
        .set('numTokens', T)
        .set('topk', k)
        .set('expertAlignment', 1)
        .set('numWorstTokens', numWorst)
        .set('cached', cached !== undefined)
        .set('signature', signature(H, k, elemBytes, fp8))
        .set('sendPos', sendPos.ptr)
        .set('meta', meta.ptr)
        .set('countsSlot', needCounts ? slot : -1)
        .set('slot', slot)
        .set('call', call.number);
      callNative(() => this.#native.notify(this.#notify.array, s.native));
      call.started = true;
      const counted = needCounts ? this.#countsEvents[slot]!.record(s) : undefined;
      this.#dispatch
        .reset()
        .set('slot', slot)
        .set('numTokens', T)
        .set('hidden', H)
        .set('elemBytes', elemBytes)
        .set('hasScales', fp8)
        .set('topk', k)
        .set('idx64', idx64)
        .set('numWorstTokens', numWorst)
        .set('x', x.ptr)
        .set('xScales', this.#ptr(xScales))
        .set('topkIdx', this.#ptr(topkIdx))
        .set('topkWeights', this.#ptr(topkWeights))
        .set('sendPos', sendPos.ptr)
        .set('meta', meta.ptr)
        .set('numSms', args.numSms ?? DEFAULT_NUM_SMS);
      callNative(() => this.#native.dispatch(this.#dispatch.array, s.native));
      const event = this.#event(`dispatch${slot}`, s, { kind: 0, index: slot });
      this.#slotGen[slot]!++;
      const gen = () => this.#slotGen[slot]!;
      const result = (numRecv: number, perExpert: readonly number[] | undefined): BackendDispatchResult<CudaRouting> => {
        const rows = numWorst > 0 ? numWorst : numRecv;
        const routing: CudaRouting = cached ?? {
          numTokens: T,
          topk: k,
          numRecvTokens: numWorst > 0 ? -1 : numRecv,
          numRows: rows,
          numRecvTokensPerExpert: numWorst > 0 ? undefined : perExpert,
          meta,
          sendPos,
          idx64,
          captured: s.isCapturing(),
          lastStream: s,
        };
        if (cached) cached.lastStream = s;
        return {
          recvX: this.#view(this.#addr(this.#slotOffset(slot, 'slabX')), x.dtype, [rows, H], gen),
          recvXScales: fp8 ? this.#view(this.#addr(this.#slotOffset(slot, 'slabScales')), 'f32', [rows, H / FP8_BLOCK], gen) : undefined,
          recvTopkIdx: cached ? undefined : this.#view(this.#addr(this.#slotOffset(slot, 'slabTopkIdx')), idx64 ? 'i64' : 'i32', [rows, k], gen),
          recvTopkWeights: cached ? undefined : this.#view(this.#addr(this.#slotOffset(slot, 'slabTopkWeights')), 'f32', [rows, k], gen),
          routing,
          event,
        };
      };
      if (!counted) return Promise.resolve(result(cached?.numRecvTokens ?? -1, cached?.numRecvTokensPerExpert));
      return this.#counted(counted, slot).then(
        (c) => result(c.numRecv, c.perExpert),
        (e: unknown) => {
          dropRouting();
          throw e;
        },
      );
    } catch (e) {
      dropRouting();
      throw e;
    }
  }

  /** The receive counts of the dispatch into `slot`, once its notify is done (off the event loop). */
  async #counted(counted: Event, slot: number): Promise<{ numRecv: number; perExpert: number[] }> {
    await counted.done();
    this.#check({ kind: 0, index: slot });
    const c = this.#native.readCounts(slot, this.#config.numLocalExperts);
    return { numRecv: c.numRecv, perExpert: Array.from(c.perExpert) };
  }

  combine(args: BackendCombineArgs<CudaRouting>, slot: number, call: EpCall): Promise<BackendCombineResult> {
    const s = this.#streamFor(args);
    const { x, routing, topkWeights, bias } = args;
    const T = routing.numTokens;
    const H = x.shape[1]!;
    const k = topkWeights ? topkWeights.shape[1]! : 0;
    const on = { device: this.device, stream: s };
    const combinedX = this.#poisonTensor(args.out ?? Tensor.empty([T, H], 'bf16', on), s);
    const combinedTopkWeights = this.#poisonTensor(topkWeights ? Tensor.empty([T, k], 'f32', on) : undefined, s);
    this.#combine
      .reset()
      .set('slot', slot)
      .set('numTokens', T)
      .set('numRows', x.shape[0]!)
      .set('hidden', H)
      .set('topk', k)
      .set('x', x.ptr)
      .set('topkWeights', this.#ptr(topkWeights))
      .set('bias0', this.#ptr(bias[0]))
      .set('bias1', this.#ptr(bias[1]))
      .set('out', combinedX.ptr)
      .set('outWeights', this.#ptr(combinedTopkWeights))
      .set('sendPos', routing.sendPos.ptr)
      .set('meta', routing.meta.ptr)
      .set('numSms', args.numSms ?? DEFAULT_NUM_SMS)
      .set('numSendSms', args.numSendSms ?? 0)
      .set('call', call.number);
    callNative(() => this.#native.combine(this.#combine.array, s.native));
    call.started = true;
    routing.lastStream = s;
    return Promise.resolve({ combinedX, combinedTopkWeights, event: this.#event(`combine${slot}`, s, { kind: 1, index: slot }) });
  }

  releaseRouting(routing: CudaRouting): void {
    // Stream-ordered frees after the last kernel that reads them, which may be
    // on another stream than the allocation (dispatch on one, combine on
    // another). If that stream is closed, the buffer's own stream, ordered
    // after every operation so far, frees them.
    const s = routing.lastStream.closed ? this.#streamFor({}) : routing.lastStream;
    routing.meta.close(s);
    routing.sendPos.close(s);
  }

  // ---- low-latency mode -----------------------------------------------------------

  #lowLatencyBaton(half: number, T: number, H: number, k: number, idx64: boolean, call: EpCall): Baton {
    return this.#ll
      .reset()
      .set('half', half)
      .set('numTokens', T)
      .set('hidden', H)
      .set('topk', k)
      .set('idx64', idx64)
      .set('numSms', this.maxNumSms)
      .set('call', call.number);
  }

  /** A low-latency launch's stream: after this buffer's operations, and after every buffer's low-latency launches on this GPU. */
  #lowLatencyStream(o: StreamOptions): Stream {
    const s = this.#streamFor(o);
    this.#lowLatencyOrder.follow(s);
    return s;
  }

  /** Where a low-latency launch ended: the event it recorded, if it recorded one. */
  #lowLatencyDone(event: EpEvent | undefined): void {
    this.#order.done(event);
    this.#lowLatencyOrder.done(event);
  }

  /**
   * One low-latency operation: send and receive in one launch, or, with a
   * hook, the send now and a hook that runs the receive later on the same
   * stream, with its own copy of the baton (the next call refills it).
   * The launch records the operation's event unless the stream is captured.
   */
  #launchLowLatency(
    ops: LowLatencyLaunches,
    baton: BigInt64Array,
    s: Stream,
    eventKey: string,
    record: CallRecord,
    withHook: boolean,
    call: EpCall,
  ): { event: EpEvent | undefined; hook: (() => Promise<void>) | undefined } {
    const e = this.#eventOf(eventKey, record);
    const event = callNative(() => (withHook ? ops.send : ops.fused)(baton, s.native, e.native)) ? e : undefined;
    call.started = true;
    this.#lowLatencyDone(event);
    if (!withHook) return { event, hook: undefined };
    const saved = baton.slice();
    // EpBuffer makes sure it runs once. The event is recorded again behind the
    // receive, whose kernels give the call's verdict.
    const hook = async () => {
      this.#order.follow(s);
      this.#lowLatencyOrder.follow(s);
      this.#lowLatencyDone(callNative(() => ops.recv(saved, s.native, e.native)) ? e : undefined);
    };
    return { event, hook };
  }

  lowLatencyDispatch(args: BackendLowLatencyDispatchArgs, half: number, call: EpCall): Promise<BackendLowLatencyDispatchResult<CudaLowLatencyRouting>> {
    const s = this.#lowLatencyStream(args);
    const { x, topkIdx } = args;
    const T = x.shape[0]!;
    const H = x.shape[1]!;
    const k = topkIdx.shape[1]!;
    const R = this.#config.worldSize;
    const L = this.#config.numLocalExperts;
    const M = this.#config.lowLatency!.maxTokensPerRank;
    // Only this rank writes the packed outputs (peers write the staging rows).
    const f = this.#layout.fields;
    this.#poisonRegion(this.#halfOffset(half, 'llRecvX'), f.llSrcInfo! - f.llRecvX!, s);
    this.#poisonRegion(this.#halfOffset(half, 'llSrcInfo'), f.llLayoutRange! - f.llSrcInfo!, s);
    const b = this.#lowLatencyBaton(half, T, H, k, topkIdx.dtype === 'i64', call)
      .set('useFp8', args.useFp8)
      .set('roundScale', args.roundScale)
      .set('x', x.ptr)
      .set('topkIdx', topkIdx.ptr)
      .set('cumulativeStats', this.#ptr(args.cumulativeRecvStats));
    const launches = this.#llDispatchLaunches;
    const { event, hook } = this.#launchLowLatency(launches, b.array, s, LL_DISPATCH_EVENTS[half]!, LL_DISPATCH_RECORDS[half]!, args.returnRecvHook, call);
    this.#halfGen[half]!++;
    const gen = () => this.#halfGen[half]!;
    const at = this.#halfPtrs[half]!;
    return Promise.resolve({
      recvX: this.#view(at.llRecvX, args.useFp8 ? 'fp8e4m3' : 'bf16', [L, R * M, H], gen),
      recvXScales: args.useFp8 ? this.#view(at.llRecvScales, 'f32', [L, R * M, H / FP8_BLOCK], gen) : undefined,
      recvCount: this.#view(at.llRecvCount, 'i32', [L], gen),
      srcInfo: this.#view(at.llSrcInfo, 'i32', [L, R * M], gen),
      layoutRange: this.#view(at.llLayoutRange, 'i32', [L, R, 2], gen),
      routing: { numTokens: T, topk: args.topkIdx.shape[1]! },
      event,
      hook,
    });
  }

  lowLatencyCombine(args: BackendLowLatencyCombineArgs<CudaLowLatencyRouting>, half: number, call: EpCall): Promise<BackendLowLatencyCombineResult> {
    const s = this.#lowLatencyStream(args);
    const { y, topkIdx, topkWeights } = args;
    const T = args.routing.numTokens;
    const H = y.shape[2]!;
    const k = topkIdx.shape[1]!;
    const combinedX = this.#poisonTensor(args.out ?? Tensor.empty([T, H], 'bf16', { device: this.device, stream: s }), s);
    const b = this.#lowLatencyBaton(half, T, H, k, topkIdx.dtype === 'i64', call)
      .set('topkIdx', topkIdx.ptr)
      .set('topkWeights', topkWeights.ptr)
      .set('y', y.ptr)
      .set('out', combinedX.ptr);
    const launches = this.#llCombineLaunches;
    const { event, hook } = this.#launchLowLatency(launches, b.array, s, LL_COMBINE_EVENTS[half]!, LL_COMBINE_RECORDS[half]!, args.returnRecvHook, call);
    return Promise.resolve({ combinedX, event, hook });
  }

  /**
   * This rank's part in a call its host refused (EpBuffer), on the buffer's
   * stream after its other operations: a small kernel that enters the call's
   * handshake with the failure, so that every peer's kernels fail the call at
   * once, move nothing, and stay in step (native/ep/ep_status.h).
   */
  takePart(call: EpCall & { kind: DataCallKind }, failure: number, target: number): void {
    switch (call.kind) {
      case 'dispatch': {
        const s = this.#streamFor({});
        this.#notify.reset().set('cached', 1).set('expertAlignment', 1).set('countsSlot', -1).set('slot', -1);
        this.#notify.set('call', call.number).set('localError', failure);
        callNative(() => this.#native.notify(this.#notify.array, s.native));
        return;
      }
      case 'combine': {
        const s = this.#streamFor({});
        this.#combine.reset().set('slot', target).set('call', call.number).set('localError', failure);
        callNative(() => this.#native.combine(this.#combine.array, s.native));
        return;
      }
      default: {
        const s = this.#lowLatencyStream({});
        const b = this.#ll.reset().set('half', target).set('call', call.number).set('localError', failure).array;
        if (call.kind === 'lowLatencyDispatch') callNative(() => this.#native.lowLatencyDispatch(b, s.native));
        else callNative(() => this.#native.lowLatencyCombine(b, s.native));
        this.#lowLatencyDone(undefined);
      }
    }
  }

  async cleanLowLatencyBuffer(live: number, call: EpCall): Promise<void> {
    await agreeNoLowLatencyResults(this.#verdicts, live, this.#config.timeoutMs, call);
    const s = this.#streamFor({});
    callNative(() => this.#native.cleanLowLatency(s.native));
    await s.synchronize();
    // No peer writes into this buffer again before every rank has cleaned its own.
    await this.#group.store.barrier(`${this.#prefix}/clean`, { timeoutMs: this.#config.timeoutMs });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Peers write into this buffer until they are done: free it only after all ranks got here.
    try {
      await this.#group.store.barrier(`${this.#prefix}/close`, { timeoutMs: this.#config.timeoutMs });
    } finally {
      for (const e of this.#countsEvents) e.close();
      for (const e of this.#events.values()) e.close();
      this.#order.close();
      releaseLowLatencyOrder(this.#dev);
      await this.#native.close();
      this.#stream.close();
    }
  }
}

function checkLimits(config: EpConfig, batons: NativeEpBatonLayout): void {
  const limits: [string, number, number][] = [
    ['worldSize (ranks in one NVLink domain)', config.worldSize, batons.maxRanks],
    ['numExperts / worldSize (local experts)', config.numLocalExperts, batons.maxLocalExperts],
    ['maxTopk', config.maxTopk, batons.maxTopk],
    ['lowLatency.maxTokensPerRank', config.lowLatency?.maxTokensPerRank ?? 0, 1024],
  ];
  for (const [what, value, max] of limits) {
    if (value > max) throw new WideepError('ERR_INVALID_ARG', `EpBuffer (cuda): ${what} is ${value}; the kernels support at most ${max}`);
  }
  if (batons.controlBytes !== CONTROL_BYTES) {
    throw new WideepError('ERR_PROTOCOL', `the addon reserves ${batons.controlBytes} control bytes, this library expects ${CONTROL_BYTES}; rebuild the addon`);
  }
}

export const createCudaBackend: CreateCudaBackend = async (group, config) => {
  const cuda = requireCuda('EpBuffer (cuda backend)');
  const device = config.device!;
  const batons = cuda.EpBuffer.batonLayout();
  checkLimits(config, batons);
  const peers = cudaProbe().peerAccess;
  const layout = computeCudaLayout(config);
  const prefix = `wideep/ep/cuda${instances++}`;
  const native = callNative(
    () => new cuda.EpBuffer(device, layout.totalBytes, config.numRecvSlots, config.rank, config.worldSize),
  );
  try {
    const configure = new Baton(batons.config);
    for (const [name, value] of Object.entries(layout.fields)) configure.set(name, value);
    configure.set('timeoutMs', config.timeoutMs);
    callNative(() => native.configure(configure.array));
    const { store, rank, worldSize } = group;
    await store.set(`${prefix}/ipc/${rank}`, native.ipcHandle());
    const handles = await Promise.all(
      Array.from({ length: worldSize }, (_, r) => store.get(`${prefix}/ipc/${r}`, { timeoutMs: config.timeoutMs })),
    );
    if (peers.length > 1 && peers.some((row) => row.some((ok) => !ok))) {
      throw new WideepError('ERR_UNSUPPORTED', 'EpBuffer (cuda): every pair of GPUs needs peer access (NVLink); see wideep doctor');
    }
    callNative(() => native.openPeers(handles));
    await store.barrier(`${prefix}/open`, { timeoutMs: config.timeoutMs });
    await store.delete(`${prefix}/ipc/${rank}`); // every rank has read it (the barrier): no key left per buffer
    return new CudaEpBackend(group, config, native, layout, batons, prefix);
  } catch (e) {
    await native.close();
    throw e;
  }
};
