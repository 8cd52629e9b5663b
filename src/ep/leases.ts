/**
 * Receive-slot bookkeeping. A dispatch result leases one receive slot (on cuda,
 * a region of the registered buffer its rows were written into) until combine
 * has been enqueued or it is released. The rules are identical on both
 * backends, so code tested on cpu does not corrupt memory on cuda.
 */
import { WideepError } from '../errors.js';
import type { Tensor } from '../tensor/tensor.js';
import type { DispatchRouting, LowLatencyRouting } from './backend.js';

export type ReleaseReason = 'combine' | 'lowLatencyCombine' | 'release' | 'close' | 'overwritten';

export class Lease {
  readonly slot: number;
  #releasedBy: ReleaseReason | undefined;
  readonly #onRelease: (lease: Lease) => void;

  constructor(slot: number, onRelease: (lease: Lease) => void) {
    this.slot = slot;
    this.#onRelease = onRelease;
  }

  get releasedBy(): ReleaseReason | undefined {
    return this.#releasedBy;
  }

  /** Idempotent: only the first call frees the slot. */
  release(reason: ReleaseReason): void {
    if (this.#releasedBy !== undefined) return;
    this.#releasedBy = reason;
    this.#onRelease(this);
  }
}

/** Normal-mode slots: a dispatch takes the lowest free slot. */
export class SlotPool {
  readonly #live: (Lease | undefined)[];

  constructor(size: number) {
    this.#live = new Array<Lease | undefined>(size).fill(undefined);
  }

  get liveCount(): number {
    return this.#live.filter((l) => l !== undefined).length;
  }

  /** Throws ERR_BUSY when every slot is leased. */
  acquire(onRelease?: () => void): Lease {
    const slot = this.#live.indexOf(undefined);
    if (slot < 0) {
      const n = this.#live.length;
      throw new WideepError(
        'ERR_BUSY',
        `dispatch: all ${n} receive slots are leased (${n} dispatch results are alive). ` +
          'Free one with combine() (which releases its handle unless keepHandle: true), result.release() or handle.release(), ' +
          'or create the EpBuffer with a larger numRecvSlots',
      );
    }
    return this.take(slot, onRelease);
  }

  releaseAll(reason: ReleaseReason): void {
    for (const lease of [...this.#live]) lease?.release(reason);
  }

  protected isFree(slot: number): boolean {
    return this.#live[slot] === undefined;
  }

  protected take(slot: number, onRelease?: () => void): Lease {
    const lease = new Lease(slot, (l) => {
      if (this.#live[l.slot] === l) this.#live[l.slot] = undefined;
      onRelease?.();
    });
    this.#live[slot] = lease;
    return lease;
  }
}

/** How a low-latency result gives its buffer back. */
const finish = (which: 'it' | 'one') =>
  `Finish ${which} with lowLatencyCombine() (and call the combine's hook, if it returned one), or free it with result.release() / handle.release()`;

/**
 * Low-latency mode: two buffers strictly alternate (as in DeepEP), because a
 * combine whose receive hook has not run may still be using the buffer it
 * just released. A dispatch whose turn falls on a live buffer is refused.
 */
export class AlternatingPool extends SlotPool {
  #next = 0;

  constructor() {
    super(2);
  }

  /** The buffer whose turn it is. */
  get next(): number {
    return this.#next;
  }

  /**
   * Passes the turn on without a lease: a dispatch that failed locally still
   * takes its turn, since its peers' rows of that call reach this buffer.
   */
  skipTurn(): number {
    const slot = this.#next;
    this.#next = 1 - slot;
    return slot;
  }

  override acquire(onRelease?: () => void): Lease {
    const slot = this.#next;
    if (!this.isFree(slot)) {
      const both = !this.isFree(1 - slot);
      throw new WideepError(
        'ERR_BUSY',
        both
          ? 'lowLatencyDispatch: two low-latency results are alive, the most the two alternating buffers hold. ' +
              finish('one')
          : `lowLatencyDispatch: the two low-latency buffers alternate, and buffer ${slot} still belongs to the result ` +
              `of the dispatch before the previous one. ${finish('it')}`,
      );
    }
    this.#next = 1 - slot;
    return this.take(slot, onRelease);
  }
}

/** Shared by the handles of a dispatch and of the cached dispatches that reuse its routing. */
export class RoutingRef<R extends DispatchRouting = DispatchRouting> {
  readonly value: R;
  #refs = 0;
  readonly #onFree: (routing: R) => void;

  constructor(value: R, onFree: (routing: R) => void) {
    this.value = value;
    this.#onFree = onFree;
  }

  retain(): void {
    this.#refs++;
  }

  drop(): void {
    if (--this.#refs === 0) this.#onFree(this.value);
  }
}

function releasedBy(reason: ReleaseReason): string {
  switch (reason) {
    case 'combine':
      return `was released by combine(); pass keepHandle: true to combine() to keep it for a later combine or cached dispatch`;
    case 'lowLatencyCombine':
      return `was released by lowLatencyCombine(), which ends the life of a low-latency result`;
    case 'release':
      return `was released by release() (combine() also releases handles unless keepHandle: true)`;
    case 'close':
      return `was released because its EpBuffer was closed`;
    case 'overwritten':
      return `was released because a lowLatencyDispatch that failed on this rank took its buffer's turn, and the peers' rows of that call overwrote it`;
  }
}

/** What every handle shares: the buffer that made it, the lease it holds and its dispatch's call number. */
abstract class LeasedHandle implements Disposable {
  /** @internal The EpBuffer that made it. */
  readonly owner: object;
  /** @internal */
  readonly lease: Lease;
  /** @internal The number of its dispatch (src/ep/calls.ts), which its combines carry. */
  readonly callNumber: number;
  /** Names the handle kind in errors. */
  protected abstract readonly kind: string;

  constructor(owner: object, lease: Lease, callNumber: number) {
    this.owner = owner;
    this.lease = lease;
    this.callNumber = callNumber;
  }

  /** @internal Whether a combine has taken it (the oldest live handle without one is a failed combine's best guess). */
  abstract get combined(): boolean;

  get released(): boolean {
    return this.lease.releasedBy !== undefined;
  }

  /** Frees the receive slot. Idempotent. */
  release(): void {
    this.lease.release('release');
  }

  [Symbol.dispose](): void {
    this.release();
  }

  /** @internal Throws ERR_CLOSED when released. */
  checkLive(where: string): void {
    const reason = this.lease.releasedBy;
    if (reason !== undefined) throw new WideepError('ERR_CLOSED', `${where}: handle: this ${this.kind} ${releasedBy(reason)}`);
  }
}

/**
 * The routing of one normal-mode dispatch plus its receive-slot lease. Pass it
 * to combine(), or to dispatch() to reuse the routing (cached dispatch).
 */
export class DispatchHandle extends LeasedHandle {
  protected readonly kind = 'dispatch handle';
  /** @internal */
  readonly routing: RoutingRef;
  #combined = false;

  /** @internal Made by EpBuffer.dispatch. */
  constructor(owner: object, lease: Lease, routing: RoutingRef, callNumber: number) {
    super(owner, lease, callNumber);
    this.routing = routing;
  }

  /** @internal */
  get combined(): boolean {
    return this.#combined;
  }

  /** @internal A combine took it (keepHandle may keep it for more). */
  markCombined(): void {
    this.#combined = true;
  }

  /** T: tokens this rank dispatched. */
  get numTokens(): number {
    return this.routing.value.numTokens;
  }
  /** k of the dispatch's topkIdx. */
  get topk(): number {
    return this.routing.value.topk;
  }
  /** N, or -1 when the dispatch used numWorstTokens. */
  get numRecvTokens(): number {
    return this.routing.value.numRecvTokens;
  }
  /** Rows of the dispatch's outputs (and of combine's x): N or numWorstTokens. */
  get numRows(): number {
    return this.routing.value.numRows;
  }
}

/**
 * A low-latency receive hook: it runs once, on every backend; a second call
 * is ERR_INVALID_ARG.
 */
export class ReceiveHook {
  #run: (() => Promise<void>) | undefined;

  constructor(run: () => Promise<void>) {
    this.#run = run;
  }

  /** Whether it has not run yet. */
  get pending(): boolean {
    return this.#run !== undefined;
  }

  call(): Promise<void> {
    const run = this.#run;
    if (!run) return Promise.reject(new WideepError('ERR_INVALID_ARG', 'this receive hook was already called'));
    this.#run = undefined;
    return run();
  }
}

/** The routing of one low-latency dispatch plus its buffer lease. */
export class LowLatencyHandle extends LeasedHandle {
  protected readonly kind = 'low-latency handle';
  /** @internal */
  readonly routing: LowLatencyRouting;
  /** i32 [L, R*M]: source token index of each slot. */
  readonly srcInfo: Tensor;
  /** i32 [L, R, 2]: (begin, count) of the slots that came from each source rank. */
  readonly layoutRange: Tensor;
  /** H of the dispatched rows. */
  readonly hidden: number;
  /** A hooked dispatch's receive. */
  readonly #receive: ReceiveHook | undefined;
  /** Set by lowLatencyCombine; with a hooked combine, its receive. */
  #combine: { receive: ReceiveHook | undefined } | undefined;

  /** @internal Made by EpBuffer.lowLatencyDispatch; `receive`: the hook of a hooked dispatch. */
  constructor(
    owner: object,
    lease: Lease,
    callNumber: number,
    routing: LowLatencyRouting,
    srcInfo: Tensor,
    layoutRange: Tensor,
    hidden: number,
    receive?: () => Promise<void>,
  ) {
    super(owner, lease, callNumber);
    this.routing = routing;
    this.srcInfo = srcInfo;
    this.layoutRange = layoutRange;
    this.hidden = hidden;
    this.#receive = receive && new ReceiveHook(receive);
  }

  /** @internal Runs the dispatch's receive (its hook), once. */
  receive(): Promise<void> {
    return this.#receive!.call();
  }

  /**
   * @internal Throws ERR_INVALID_ARG while the dispatch's rows have not been
   * received (its hook has not run), or once a combine has taken the handle.
   */
  checkCombinable(where: string): void {
    if (this.#receive?.pending) {
      throw new WideepError('ERR_INVALID_ARG', `${where}: handle: its dispatch's receive hook has not been called, so its rows have not arrived; await hook() first`);
    }
    if (this.#combine) throw new WideepError('ERR_INVALID_ARG', `${where}: handle: a combine has taken it already; a dispatch is combined once`);
  }

  /** @internal */
  get combined(): boolean {
    return this.#combine !== undefined;
  }

  /** @internal Marks the handle as taken by a combine, before anything is awaited. */
  beginCombine(): void {
    this.#combine = { receive: undefined };
  }

  /**
   * @internal A hooked combine's receive, once enqueued. If the handle was
   * released meanwhile, the receive runs now, to keep this rank in step.
   */
  setCombineReceive(receive: ReceiveHook): void {
    this.#combine = { receive };
    if (this.released) receive.call().catch(() => {});
  }

  /**
   * Frees the buffer. A hooked dispatch or combine whose hook never ran
   * receives first: each receive advances the buffer's sequence numbers, which
   * must stay in step with the peers' (on a closed buffer nothing is left to
   * keep in step).
   */
  override release(): void {
    this.end('release');
  }

  /** @internal release() with the reason a later use of the handle reports. */
  end(reason: ReleaseReason): void {
    if (!this.released) {
      if (this.#receive?.pending) this.#receive.call().catch(() => {});
      if (this.#combine?.receive?.pending) this.#combine.receive.call().catch(() => {});
    }
    this.lease.release(reason);
  }

  /** T: tokens this rank dispatched. */
  get numTokens(): number {
    return this.routing.numTokens;
  }
}
