/**
 * EpBuffer: the DeepEP-style dispatch/combine API. It validates arguments,
 * manages receive-slot leases and delegates the data movement to a backend
 * (`cpu`: the reference; `cuda`: NVLink kernels, loaded on demand).
 *
 * Every collective method does its checks and takes its lease synchronously,
 * at call time, so errors come before any rank moves data and concurrent
 * calls see each other's leases. Each call carries a number
 * (src/ep/calls.ts); a call refused here still takes part, flagged, so that
 * it fails on every rank and the ranks stay in step.
 */
import { hostname } from 'node:os';

import { WideepError, invalidArg } from '../errors.js';
import type { ProcessGroup } from '../runtime/types.js';
import type { Tensor } from '../tensor/tensor.js';
import type {
  BackendDispatchResult,
  BackendLowLatencyCombineResult,
  BackendLowLatencyDispatchResult,
  CreateCudaBackend,
  DispatchRouting,
  EpBackend,
  LowLatencyRouting,
} from './backend.js';
import { localFailureNumber, type CallKind, type DataCallKind, type EpCall } from './calls.js';
import { CpuBackend } from './cpu/backend.js';
import { alignUp } from './dispatch-layout.js';
import { AlternatingPool, DispatchHandle, LowLatencyHandle, ReceiveHook, RoutingRef, SlotPool, type Lease } from './leases.js';
import { cudaPath, type CudaPath, type Placement } from './span.js';
import { StoreTransport, isCpuTransport, type CpuTransport } from './transport.js';
import type {
  CombineOptions,
  CombineResult,
  DispatchLayout,
  DispatchOptions,
  DispatchResult,
  EpBackendKind,
  EpBufferOptions,
  EpConfig,
  LowLatencyCombineOptions,
  LowLatencyCombineResult,
  LowLatencyDispatchOptions,
  LowLatencyDispatchResult,
  StreamOptions,
} from './types.js';
import {
  checkSharedOptions,
  requireLowLatency,
  requireOptions,
  resolveConfig,
  sharedOptions,
  validateCombine,
  validateDispatch,
  validateLayoutArgs,
  validateLowLatencyCombine,
  validateLowLatencyDispatch,
} from './validate.js';

function isProcessGroup(v: unknown): v is ProcessGroup {
  const g = v as Partial<ProcessGroup> | null;
  return typeof g === 'object' && g !== null && typeof g.store === 'object' && typeof g.rank === 'number' && typeof g.worldSize === 'number';
}

/**
 * Buffers made per ProcessGroup or CpuTransport: ranks create buffers in the
 * same order, so this index (the store prefix, and the buffer every call
 * names) agrees between them.
 */
const buffersPer = new WeakMap<object, number>();

function nextBufferIndex(group: object): number {
  const n = buffersPer.get(group) ?? 0;
  buffersPer.set(group, n + 1);
  return n;
}

/** The cuda backends' modules (one node; across nodes), each loaded once for every buffer (and every rank) of the process. */
const cudaBackends = new Map<CudaPath, Promise<CreateCudaBackend>>();

function loadCudaBackend(path: CudaPath): Promise<CreateCudaBackend> {
  let loading = cudaBackends.get(path);
  if (!loading) {
    loading = path === 'one node' ? importCudaBackend('./cuda/backend.js', 'createCudaBackend') : importCudaBackend('./cuda/node/backend.js', 'createCudaNodeBackend');
    cudaBackends.set(path, loading);
  }
  return loading;
}

async function importCudaBackend(spec: string, name: string): Promise<CreateCudaBackend> {
  // A variable specifier: the module is optional, and tsc must not resolve it.
  let mod: Record<string, CreateCudaBackend | undefined>;
  try {
    mod = (await import(spec)) as typeof mod;
  } catch (e) {
    const err = e as { code?: unknown; message?: unknown };
    const notFound =
      err?.code === 'ERR_MODULE_NOT_FOUND' ||
      err?.code === 'MODULE_NOT_FOUND' ||
      /Cannot find module|Failed to load url|Does the file exist/i.test(String(err?.message));
    if (notFound && /cuda[\\/](node[\\/])?backend/.test(String(err?.message))) {
      throw new WideepError('ERR_UNSUPPORTED', 'the cuda backend is not built into this version', { cause: e });
    }
    throw e;
  }
  const create = mod[name];
  if (typeof create !== 'function') {
    throw new WideepError('ERR_UNSUPPORTED', `the cuda backend is not built into this version (${spec} has no ${name})`);
  }
  return create;
}

/**
 * All ranks compare the options that must agree, and learn where every rank
 * runs; every rank gets the same verdict and the same placements.
 */
async function exchangeOptions(transport: CpuTransport, config: EpConfig, mine: Placement): Promise<Placement[]> {
  const sent = new TextEncoder().encode(JSON.stringify({ shared: sharedOptions(config), placement: mine }));
  const all = (await transport.allGather(sent, { timeoutMs: config.timeoutMs })).map(
    (bytes) => JSON.parse(new TextDecoder().decode(bytes)) as { shared: ReturnType<typeof sharedOptions>; placement: Placement },
  );
  checkSharedOptions(config.rank, all.map((o) => o.shared));
  return all.map((o) => o.placement);
}

/** A process group's nodes when they are equal (localWorldSize ranks each); undefined otherwise. */
function groupRanksPerNode(group: ProcessGroup): number | undefined {
  return group.nnodes > 1 && group.nnodes * group.localWorldSize === group.worldSize ? group.localWorldSize : undefined;
}

/** What a dispatch's lease holds: its routing (normal mode) and its handle, once made. */
interface Held<H> {
  routing?: RoutingRef;
  handle?: H;
}

export class EpBuffer implements AsyncDisposable {
  readonly #config: EpConfig;
  readonly #backend: EpBackend;
  /** The transport this buffer made (and closes), if any. */
  readonly #ownTransport: CpuTransport | undefined;
  readonly #slots: SlotPool;
  readonly #lowLatencySlots = new AlternatingPool();
  /** This buffer's index on its group or transport, which every call names. */
  readonly #index: number;
  /** Numbered calls so far (src/ep/calls.ts). */
  #calls = 0;
  /** The live handles (their leases remove them as they end). */
  readonly #handles = new Set<DispatchHandle | LowLatencyHandle>();
  /** Backend calls not settled yet: close() lets them end first. */
  readonly #inFlight = new Set<Promise<unknown>>();
  #closing: Promise<void> | undefined;

  private constructor(config: EpConfig, backend: EpBackend, ownTransport: CpuTransport | undefined, index: number) {
    this.#config = config;
    this.#backend = backend;
    this.#ownTransport = ownTransport;
    this.#slots = new SlotPool(config.numRecvSlots);
    this.#index = index;
  }

  /**
   * Collective: every rank of `group` calls it with the same shared options.
   * `group` is a CpuTransport (cpu backend) or a ProcessGroup (cuda, or cpu
   * over the group's store).
   */
  static async create(group: CpuTransport | ProcessGroup, options: EpBufferOptions): Promise<EpBuffer> {
    const where = 'EpBuffer.create';
    const viaTransport = isCpuTransport(group);
    if (!viaTransport && !isProcessGroup(group)) throw invalidArg(`${where}: group`, 'a CpuTransport or a ProcessGroup', group);
    // Taken before anything can fail, so that a rank whose call fails stays in step with the others.
    const index = nextBufferIndex(group);
    requireOptions(where, options);
    const backend: EpBackendKind = options.backend ?? (viaTransport || group.device === undefined ? 'cpu' : 'cuda');
    const device = options.device ?? (viaTransport ? undefined : group.device);
    const ranksPerNode = options.ranksPerNode ?? (viaTransport ? undefined : groupRanksPerNode(group));
    const config = resolveConfig(group.rank, group.worldSize, backend, { ...options, device, ranksPerNode });
    if (backend === 'cuda' && viaTransport) {
      throw new WideepError('ERR_INVALID_ARG', `${where}: the cuda backend needs a ProcessGroup, got a CpuTransport; use backend: 'cpu'`);
    }
    if (backend === 'cuda' && config.device === undefined) {
      throw new WideepError('ERR_INVALID_ARG', `${where}: the cuda backend needs a GPU: the group has no device and options.device is unset`);
    }
    // Both cuda modules load before any rank's exchange, so a missing one fails every rank alike.
    const cudaModules = backend === 'cuda' ? { 'one node': await loadCudaBackend('one node'), 'across nodes': await loadCudaBackend('across nodes') } : undefined;
    const transport = viaTransport ? group : new StoreTransport(group.store, group.rank, group.worldSize, `wideep/ep/buffer${index}`);
    const own = viaTransport ? undefined : transport;
    try {
      const placements = await exchangeOptions(transport, config, { host: hostname(), nnodes: viaTransport ? 1 : group.nnodes });
      if (cudaModules) {
        const createCuda = cudaModules[cudaPath(config, placements)];
        await own?.close(); // the cuda backend brings its own communication
        return new EpBuffer(config, await createCuda(group as ProcessGroup, config), undefined, index);
      }
      return new EpBuffer(config, new CpuBackend(transport, config), own, index);
    } catch (e) {
      await own?.close();
      throw e;
    }
  }

  get rank(): number {
    return this.#config.rank;
  }
  get worldSize(): number {
    return this.#config.worldSize;
  }
  get numExperts(): number {
    return this.#config.numExperts;
  }
  get numLocalExperts(): number {
    return this.#config.numLocalExperts;
  }
  get hidden(): number {
    return this.#config.hidden;
  }
  get backend(): EpBackendKind {
    return this.#config.backend;
  }
  /** The resolved options. */
  get config(): EpConfig {
    return this.#config;
  }
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  // ---- normal mode ----------------------------------------------------------------

  /** Local: which ranks and experts each token goes to. */
  getDispatchLayout(topkIdx: Tensor, numExperts?: number, options: StreamOptions = {}): DispatchLayout {
    this.#checkOpen('getDispatchLayout');
    const t = validateLayoutArgs(this.#config, this.#backend.device, topkIdx, numExperts, options);
    return this.#backend.getDispatchLayout(t, options);
  }

  dispatch(args: DispatchOptions): Promise<DispatchResult> {
    const where = 'dispatch';
    const refused = this.#refusedBeforeCall(where, false);
    if (refused) return refused;
    const call = this.#nextCall('dispatch');
    // The routing a lease holds: a cached dispatch's from the start (so releasing the
    // source handle meanwhile cannot free it), a new one once the backend made it.
    const held: Held<DispatchHandle> = {};
    let lease: Lease | undefined;
    try {
      requireOptions(where, args);
      const cached = args.handle === undefined ? undefined : this.#ownHandle(where, args.handle).routing;
      const v = validateDispatch(this.#config, this.#backend.device, args, cached?.value, this.#backend.maxNumSms);
      lease = this.#slots.acquire(() => this.#released(held));
      held.routing = cached;
      cached?.retain();
      const pending = this.#backend.dispatch(
        {
          x: v.x,
          xScales: v.xScales,
          topkIdx: v.topkIdx,
          topkWeights: v.topkWeights,
          layout: v.layout,
          cached: cached?.value,
          numWorstTokens: v.numWorstTokens,
          numSms: v.numSms,
          previousEvent: args.previousEvent,
          stream: args.stream,
        },
        lease.slot,
        call,
      );
      return this.#track(this.#dispatched(pending, lease, held, v.expertAlignment, call));
    } catch (e) {
      lease?.release('release');
      return this.#failedLocally(call, e, -1);
    }
  }

  async #dispatched(
    pending: Promise<BackendDispatchResult<DispatchRouting>>,
    lease: Lease,
    held: Held<DispatchHandle>,
    expertAlignment: number,
    call: EpCall,
  ): Promise<DispatchResult> {
    // A new routing that close() overtook is freed here (close waits for this call, so the backend is still open).
    const out = await this.#leased(lease, pending, (o) => {
      if (!held.routing) this.#backend.releaseRouting?.(o.routing);
    });
    if (!held.routing) {
      held.routing = new RoutingRef(out.routing, (r) => this.#backend.releaseRouting?.(r));
      held.routing.retain();
    }
    const handle = new DispatchHandle(this, lease, held.routing, call.number);
    held.handle = handle;
    this.#handles.add(handle);
    const value: DispatchRouting = held.routing.value;
    return {
      recvX: out.recvX,
      recvXScales: out.recvXScales,
      recvTopkIdx: out.recvTopkIdx,
      recvTopkWeights: out.recvTopkWeights,
      numRecvTokens: value.numRecvTokens,
      numRecvTokensPerExpert: value.numRecvTokensPerExpert?.map((n) => alignUp(n, expertAlignment)) ?? [],
      handle,
      event: out.event,
      release: () => handle.release(),
      [Symbol.dispose]: () => handle.release(),
    };
  }

  /** Releases the handle's slot once enqueued, unless keepHandle: true. */
  combine(args: CombineOptions): Promise<CombineResult> {
    const where = 'combine';
    const refused = this.#refusedBeforeCall(where, false);
    if (refused) return refused;
    const known = this.#handleOf(args, DispatchHandle);
    const target = known ?? this.#oldestUncombined(DispatchHandle);
    const call = target && this.#combineCall('combine', target);
    try {
      requireOptions(where, args);
      const handle = this.#ownHandle(where, args.handle);
      const v = validateCombine(this.#config, this.#backend.device, args, handle.routing.value, this.#backend.maxNumSms);
      const pending = this.#backend.combine(
        {
          x: v.x,
          routing: handle.routing.value,
          topkWeights: v.topkWeights,
          bias: v.bias,
          numSms: v.numSms,
          numSendSms: v.numSendSms,
          out: v.out,
          previousEvent: args.previousEvent,
          stream: args.stream,
        },
        handle.lease.slot,
        call!, // a handle of this buffer is its own target
      );
      handle.markCombined();
      if (!v.keepHandle) handle.lease.release('combine');
      return this.#track(pending.then((out) => ({ combinedX: out.combinedX, combinedTopkWeights: out.combinedTopkWeights, event: out.event })));
    } catch (e) {
      if (!call || call.started || !this.#combinable(target!)) return Promise.reject(e);
      // The peers' combines of this dispatch end their handles, so this rank's ends too.
      target!.markCombined();
      if (args?.keepHandle !== true) target!.lease.release('combine');
      return this.#failedLocally(call, e, target!.lease.slot);
    }
  }

  // ---- low-latency mode -------------------------------------------------------------

  lowLatencyDispatch(args: LowLatencyDispatchOptions): Promise<LowLatencyDispatchResult> {
    const where = 'lowLatencyDispatch';
    const refused = this.#refusedBeforeCall(where, true);
    if (refused) return refused;
    const call = this.#nextCall('lowLatencyDispatch');
    const held: Held<LowLatencyHandle> = {};
    let lease: Lease | undefined;
    try {
      const v = validateLowLatencyDispatch(this.#config, this.#backend.device, args);
      lease = this.#lowLatencySlots.acquire(() => this.#released(held));
      const pending = this.#backend.lowLatencyDispatch(v, lease.slot, call);
      return this.#track(this.#lowLatencyDispatched(pending, lease, held, v.x.shape[1]!, call));
    } catch (e) {
      const half = lease?.slot ?? this.#skipLowLatencyTurn();
      lease?.release('release');
      return this.#failedLocally(call, e, half);
    }
  }

  async #lowLatencyDispatched(
    pending: Promise<BackendLowLatencyDispatchResult<LowLatencyRouting>>,
    lease: Lease,
    held: Held<LowLatencyHandle>,
    hidden: number,
    call: EpCall,
  ): Promise<LowLatencyDispatchResult> {
    const out = await this.#leased(lease, pending);
    const handle = new LowLatencyHandle(this, lease, call.number, out.routing, out.srcInfo, out.layoutRange, hidden, out.hook);
    held.handle = handle;
    this.#handles.add(handle);
    const result: LowLatencyDispatchResult = {
      recvX: out.recvX,
      recvXScales: out.recvXScales,
      recvCount: out.recvCount,
      handle,
      event: out.event,
      release: () => handle.release(),
      [Symbol.dispose]: () => handle.release(),
    };
    if (out.hook) result.hook = () => this.#openThen('lowLatencyDispatch hook', () => handle.receive());
    return result;
  }

  /**
   * A low-latency dispatch that failed here still takes its turn: the peers'
   * rows of that call land in the buffer whose turn it was, so a result that
   * still holds it ends.
   */
  #skipLowLatencyTurn(): number {
    const half = this.#lowLatencySlots.skipTurn();
    for (const h of this.#handles) {
      if (h instanceof LowLatencyHandle && !h.released && h.lease.slot === half) h.end('overwritten');
    }
    return half;
  }

  /** Ends the life of the handle's result once enqueued. */
  lowLatencyCombine(args: LowLatencyCombineOptions): Promise<LowLatencyCombineResult> {
    const where = 'lowLatencyCombine';
    const refused = this.#refusedBeforeCall(where, true);
    if (refused) return refused;
    const known = this.#handleOf(args, LowLatencyHandle);
    const target = known ?? this.#oldestUncombined(LowLatencyHandle);
    const call = target && this.#combineCall('lowLatencyCombine', target);
    try {
      requireOptions(where, args);
      const handle = this.#ownLowLatencyHandle(where, args.handle);
      handle.checkCombinable(where);
      const v = validateLowLatencyCombine(this.#config, this.#backend.device, args, handle.routing);
      const pending = this.#backend.lowLatencyCombine(v, handle.lease.slot, call!); // a handle of this buffer is its own target
      // Taken once the backend accepted the call, before anything is awaited: a
      // second combine in the same tick is refused.
      handle.beginCombine();
      // With a receive hook, the buffer is still being received into until the
      // hook runs: the lease ends there, so no later dispatch can reuse it early.
      if (!args.returnRecvHook) handle.lease.release('lowLatencyCombine');
      return this.#track(this.#lowLatencyCombined(pending, handle));
    } catch (e) {
      if (!call || call.started || !this.#combinable(target!)) return Promise.reject(e);
      // The peers' combines of this dispatch end their results; this rank's ends
      // too, its dispatch's receive (if its hook has not run) going first.
      const half = target!.lease.slot;
      target!.end('lowLatencyCombine');
      return this.#failedLocally(call, e, half);
    }
  }

  async #lowLatencyCombined(pending: Promise<BackendLowLatencyCombineResult>, handle: LowLatencyHandle): Promise<LowLatencyCombineResult> {
    let out;
    try {
      out = await pending;
    } catch (e) {
      handle.lease.release('lowLatencyCombine');
      throw e;
    }
    const result: LowLatencyCombineResult = { combinedX: out.combinedX, event: out.event };
    const hook = out.hook;
    const receive = hook
      ? new ReceiveHook(async () => {
          try {
            await hook();
          } finally {
            handle.lease.release('lowLatencyCombine');
          }
        })
      : undefined;
    if (receive) {
      handle.setCombineReceive(receive);
      result.hook = () => this.#openThen('lowLatencyCombine hook', () => receive.call());
    }
    return result;
  }

  /**
   * Collective: every rank calls it. Resets the low-latency buffers; if a
   * low-latency result is alive on any rank, every rank refuses (ERR_BUSY).
   */
  cleanLowLatencyBuffer(): Promise<void> {
    const where = 'cleanLowLatencyBuffer';
    const refused = this.#refusedBeforeCall(where, true);
    if (refused) return refused;
    return this.#track(this.#backend.cleanLowLatencyBuffer(this.#lowLatencySlots.liveCount, this.#nextCall(where)));
  }

  // ---- lifetime -------------------------------------------------------------------

  /**
   * Releases every lease, lets the calls in flight end (each is bounded by
   * timeoutMs; a dispatch that ends now frees its routing), then closes the
   * backend. Idempotent; later calls are ERR_CLOSED.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#slots.releaseAll('close');
      this.#lowLatencySlots.releaseAll('close');
      this.#handles.clear();
      await Promise.allSettled(this.#inFlight);
      try {
        await this.#backend.close();
      } finally {
        await this.#ownTransport?.close();
      }
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---- helpers ----------------------------------------------------------------------

  #checkOpen(where: string): void {
    if (this.#closing) throw new WideepError('ERR_CLOSED', `${where}: this EpBuffer is closed`);
  }

  /**
   * The rejection of a call that no rank takes part in: on a closed buffer
   * (its resources are gone), or a low-latency one on a buffer without
   * low-latency mode (agreed at create, so refused alike on every rank).
   */
  #refusedBeforeCall(where: string, lowLatency: boolean): Promise<never> | undefined {
    try {
      this.#checkOpen(where);
      if (lowLatency) requireLowLatency(where, this.#config);
      return undefined;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** `run()` on an open buffer; ERR_CLOSED (as a rejection) on a closed one. */
  #openThen(where: string, run: () => Promise<void>): Promise<void> {
    try {
      this.#checkOpen(where);
    } catch (e) {
      return Promise.reject(e);
    }
    return run();
  }

  #nextCall(kind: CallKind): EpCall {
    return { kind, buffer: this.#index, number: ++this.#calls, started: false };
  }

  /** A combine of `target`'s dispatch carries that dispatch's number. */
  #combineCall(kind: 'combine' | 'lowLatencyCombine', target: DispatchHandle | LowLatencyHandle): EpCall {
    return { kind, buffer: this.#index, number: target.callNumber, started: false };
  }

  /**
   * A call that failed on this rank before it communicated: the rank takes
   * part in it anyway, flagged, so that its peers fail the same call at once
   * (ERR_PEER) and stay in step with it; then this rank gets its own error.
   */
  #failedLocally<T>(call: EpCall, error: unknown, target: number): Promise<T> {
    if (!call.started && call.kind !== 'cleanLowLatencyBuffer') {
      try {
        this.#backend.takePart(call as EpCall & { kind: DataCallKind }, localFailureNumber(error), target);
      } catch {
        // This rank cannot take part (its GPU buffer failed earlier): its peers time out instead.
      }
    }
    return Promise.reject(error);
  }

  /** A lease ended: its handle is no longer live, and its routing loses a holder. */
  #released(held: Held<DispatchHandle | LowLatencyHandle>): void {
    held.routing?.drop();
    if (held.handle) this.#handles.delete(held.handle);
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inFlight.add(p);
    const forget = () => void this.#inFlight.delete(p);
    p.then(forget, forget);
    return p;
  }

  /**
   * A backend call's result while `lease` holds its slot: the lease ends if
   * the call fails, and a result that arrives once the buffer is closing is
   * refused, after `discard` gave back what it holds.
   */
  async #leased<T>(lease: Lease, pending: Promise<T>, discard?: (out: T) => void): Promise<T> {
    let out: T;
    try {
      out = await pending;
    } catch (e) {
      lease.release('release');
      throw e;
    }
    if (lease.releasedBy === 'close') {
      discard?.(out);
      throw new WideepError('ERR_CLOSED', 'this EpBuffer was closed while the call was in flight');
    }
    return out;
  }

  /** `args.handle` if it is a handle of `kind` that this buffer made (live or not). */
  #handleOf<H extends DispatchHandle | LowLatencyHandle>(args: unknown, kind: abstract new (...a: never[]) => H): H | undefined {
    const h = (args as { handle?: unknown } | null | undefined)?.handle;
    return h instanceof kind && h.owner === this ? h : undefined;
  }

  /**
   * Whether the peers may still combine `target`'s dispatch, so that a
   * combine that failed here takes part in theirs: while the handle lives
   * (a low-latency one until a combine took it), or after a release() that
   * came before any combine. Not once a combine ended it (theirs is over), nor
   * once a failed dispatch took its buffer.
   */
  #combinable(target: DispatchHandle | LowLatencyHandle): boolean {
    if (target instanceof LowLatencyHandle && target.combined) return false;
    const reason = target.lease.releasedBy;
    return reason === undefined || (reason === 'release' && !target.combined);
  }

  /**
   * The live handle of `kind` with the oldest dispatch and no combine yet: the
   * dispatch a combine whose handle is unusable most likely meant (combines
   * usually follow their dispatches in order). Undefined when none is live,
   * and then there is no call for this rank to take part in.
   */
  #oldestUncombined<H extends DispatchHandle | LowLatencyHandle>(kind: abstract new (...a: never[]) => H): H | undefined {
    let oldest: H | undefined;
    for (const h of this.#handles) {
      if (h instanceof kind && !h.combined && (!oldest || h.callNumber < oldest.callNumber)) oldest = h;
    }
    return oldest;
  }

  #ownHandle(where: string, handle: unknown): DispatchHandle {
    return this.#own(where, handle, DispatchHandle, 'a DispatchHandle from dispatch()');
  }

  #ownLowLatencyHandle(where: string, handle: unknown): LowLatencyHandle {
    return this.#own(where, handle, LowLatencyHandle, 'a LowLatencyHandle from lowLatencyDispatch()');
  }

  /** A live handle of `kind` that this buffer made, or the error that says what is wrong with it. */
  #own<H extends DispatchHandle | LowLatencyHandle>(where: string, handle: unknown, kind: abstract new (...args: never[]) => H, expected: string): H {
    if (!(handle instanceof kind)) throw invalidArg(`${where}: handle`, expected, handle);
    if (handle.owner !== this) {
      throw new WideepError('ERR_INVALID_ARG', `${where}: handle: this handle belongs to another EpBuffer; a handle only works with the buffer whose dispatch made it`);
    }
    handle.checkLive(where);
    return handle;
  }
}
