/**
 * EpBuffer: the DeepEP-style dispatch/combine API. It validates arguments,
 * manages receive-slot leases and delegates the data movement to a backend
 * (`cpu`: the reference; `cuda`: NVLink kernels, loaded on demand).
 *
 * Every collective method does its checks and takes its lease synchronously,
 * at call time, so errors come before any rank communicates and concurrent
 * calls see each other's leases.
 */
import { WideepError, invalidArg } from '../errors.js';
import type { ProcessGroup } from '../runtime/types.js';
import type { Tensor } from '../tensor/tensor.js';
import type { CreateCudaBackend, DispatchRouting, EpBackend } from './backend.js';
import { CpuBackend } from './cpu/backend.js';
import { alignUp } from './dispatch-layout.js';
import { AlternatingPool, DispatchHandle, LowLatencyHandle, ReceiveHook, RoutingRef, SlotPool, type Lease } from './leases.js';
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

/** Buffers made per ProcessGroup; ranks create buffers in the same order, so the store prefixes agree. */
const buffersPerGroup = new WeakMap<ProcessGroup, number>();

function storePrefix(group: ProcessGroup): string {
  const n = buffersPerGroup.get(group) ?? 0;
  buffersPerGroup.set(group, n + 1);
  return `wideep/ep/buffer${n}`;
}

async function loadCudaBackend(): Promise<CreateCudaBackend> {
  // A variable specifier: the module is optional, and tsc must not resolve it.
  const spec = './cuda/backend.js';
  let mod: { createCudaBackend?: CreateCudaBackend };
  try {
    mod = (await import(spec)) as typeof mod;
  } catch (e) {
    const err = e as { code?: unknown; message?: unknown };
    const notFound =
      err?.code === 'ERR_MODULE_NOT_FOUND' ||
      err?.code === 'MODULE_NOT_FOUND' ||
      /Cannot find module|Failed to load url|Does the file exist/i.test(String(err?.message));
    if (notFound && /cuda[\\/]backend/.test(String(err?.message))) {
      throw new WideepError('ERR_UNSUPPORTED', 'the cuda backend is not built into this version', { cause: e });
    }
    throw e;
  }
  if (typeof mod.createCudaBackend !== 'function') {
    throw new WideepError('ERR_UNSUPPORTED', 'the cuda backend is not built into this version (cuda/backend.js has no createCudaBackend)');
  }
  return mod.createCudaBackend;
}

/** All ranks compare the options that must agree; every rank gets the same verdict. */
async function exchangeOptions(transport: CpuTransport, config: EpConfig): Promise<void> {
  const mine = new TextEncoder().encode(JSON.stringify(sharedOptions(config)));
  const all = await transport.allGather(mine, { timeoutMs: config.timeoutMs });
  checkSharedOptions(
    config.rank,
    all.map((bytes) => JSON.parse(new TextDecoder().decode(bytes)) as ReturnType<typeof sharedOptions>),
  );
}

export class EpBuffer implements AsyncDisposable {
  readonly #config: EpConfig;
  readonly #backend: EpBackend;
  /** The transport this buffer made (and closes), if any. */
  readonly #ownTransport: CpuTransport | undefined;
  readonly #slots: SlotPool;
  readonly #lowLatencySlots = new AlternatingPool();
  #closing: Promise<void> | undefined;

  private constructor(config: EpConfig, backend: EpBackend, ownTransport: CpuTransport | undefined) {
    this.#config = config;
    this.#backend = backend;
    this.#ownTransport = ownTransport;
    this.#slots = new SlotPool(config.numRecvSlots);
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
    const prefix = viaTransport ? undefined : storePrefix(group);
    requireOptions(where, options);
    const backend: EpBackendKind = options.backend ?? (viaTransport || group.device === undefined ? 'cpu' : 'cuda');
    const device = options.device ?? (viaTransport ? undefined : group.device);
    const config = resolveConfig(group.rank, group.worldSize, backend, { ...options, device });
    if (backend === 'cuda' && viaTransport) {
      throw new WideepError('ERR_INVALID_ARG', `${where}: the cuda backend needs a ProcessGroup, got a CpuTransport; use backend: 'cpu'`);
    }
    if (backend === 'cuda' && config.device === undefined) {
      throw new WideepError('ERR_INVALID_ARG', `${where}: the cuda backend needs a GPU: the group has no device and options.device is unset`);
    }
    const createCuda = backend === 'cuda' ? await loadCudaBackend() : undefined;
    const transport = viaTransport ? group : new StoreTransport(group.store, group.rank, group.worldSize, prefix!);
    const own = viaTransport ? undefined : transport;
    try {
      await exchangeOptions(transport, config);
      if (createCuda) {
        await own?.close(); // the cuda backend brings its own communication
        return new EpBuffer(config, await createCuda(group as ProcessGroup, config), undefined);
      }
      return new EpBuffer(config, new CpuBackend(transport, config), own);
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

  async dispatch(args: DispatchOptions): Promise<DispatchResult> {
    const where = 'dispatch';
    this.#checkOpen(where);
    requireOptions(where, args);
    const cached = args.handle === undefined ? undefined : this.#ownHandle(where, args.handle).routing;
    const v = validateDispatch(this.#config, this.#backend.device, args, cached?.value, this.#backend.maxNumSms);
    // A cached dispatch holds the routing from the start, so releasing the source handle meanwhile cannot free it.
    let routing: RoutingRef | undefined;
    const lease = this.#slots.acquire(() => routing?.drop());
    routing = cached;
    routing?.retain();
    const out = await this.#run(lease, () =>
      this.#backend.dispatch(
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
      ),
    );
    if (!routing) {
      routing = new RoutingRef(out.routing, (r) => this.#backend.releaseRouting?.(r));
      routing.retain();
    }
    const handle = new DispatchHandle(this, lease, routing);
    const value: DispatchRouting = routing.value;
    return {
      recvX: out.recvX,
      recvXScales: out.recvXScales,
      recvTopkIdx: out.recvTopkIdx,
      recvTopkWeights: out.recvTopkWeights,
      numRecvTokens: value.numRecvTokens,
      numRecvTokensPerExpert: value.numRecvTokensPerExpert?.map((n) => alignUp(n, v.expertAlignment)) ?? [],
      handle,
      event: out.event,
      release: () => handle.release(),
      [Symbol.dispose]: () => handle.release(),
    };
  }

  /** Releases the handle's slot once enqueued, unless keepHandle: true. */
  async combine(args: CombineOptions): Promise<CombineResult> {
    const where = 'combine';
    this.#checkOpen(where);
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
    );
    if (!v.keepHandle) handle.lease.release('combine');
    const out = await pending;
    return { combinedX: out.combinedX, combinedTopkWeights: out.combinedTopkWeights, event: out.event };
  }

  // ---- low-latency mode -------------------------------------------------------------

  async lowLatencyDispatch(args: LowLatencyDispatchOptions): Promise<LowLatencyDispatchResult> {
    const where = 'lowLatencyDispatch';
    this.#checkOpen(where);
    const v = validateLowLatencyDispatch(this.#config, this.#backend.device, args);
    const lease = this.#lowLatencySlots.acquire();
    const out = await this.#run(lease, () => this.#backend.lowLatencyDispatch(v, lease.slot));
    const handle = new LowLatencyHandle(this, lease, out.routing, out.srcInfo, out.layoutRange, v.x.shape[1]!, out.hook);
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

  /** Ends the life of the handle's result once enqueued. */
  async lowLatencyCombine(args: LowLatencyCombineOptions): Promise<LowLatencyCombineResult> {
    const where = 'lowLatencyCombine';
    this.#checkOpen(where);
    requireOptions(where, args);
    const handle = this.#ownLowLatencyHandle(where, args.handle);
    handle.checkCombinable(where);
    const v = validateLowLatencyCombine(this.#config, this.#backend.device, args, handle.routing);
    const pending = this.#backend.lowLatencyCombine(v, handle.lease.slot);
    // Taken once the backend accepted the call (a refusal leaves the handle as it
    // was), before anything is awaited: a second combine in the same tick is refused.
    handle.beginCombine();
    // With a receive hook, the buffer is still being received into until the
    // hook runs: the lease ends there, so no later dispatch can reuse it early.
    if (!args.returnRecvHook) handle.lease.release('lowLatencyCombine');
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
  async cleanLowLatencyBuffer(): Promise<void> {
    const where = 'cleanLowLatencyBuffer';
    this.#checkOpen(where);
    requireLowLatency(where, this.#config);
    await this.#backend.cleanLowLatencyBuffer(this.#lowLatencySlots.liveCount);
  }

  // ---- lifetime -------------------------------------------------------------------

  /** Releases every lease and the backend. Idempotent; later calls are ERR_CLOSED. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#slots.releaseAll('close');
      this.#lowLatencySlots.releaseAll('close');
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

  /** `run()` on an open buffer; ERR_CLOSED (as a rejection) on a closed one. */
  #openThen(where: string, run: () => Promise<void>): Promise<void> {
    try {
      this.#checkOpen(where);
    } catch (e) {
      return Promise.reject(e);
    }
    return run();
  }

  /**
   * Runs a backend call that holds `lease`: the lease is released if the call
   * fails, and the result is refused if the buffer was closed meanwhile.
   */
  async #run<T>(lease: Lease, call: () => Promise<T>): Promise<T> {
    let out: T;
    try {
      out = await call();
    } catch (e) {
      lease.release('release');
      throw e;
    }
    if (lease.releasedBy === 'close') throw new WideepError('ERR_CLOSED', 'this EpBuffer was closed while the call was in flight');
    return out;
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
