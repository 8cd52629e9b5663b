/**
 * Byte transports for the cpu backend. Collectives: every rank calls them in
 * the same order, and the n-th call of each rank belongs together.
 */
import { WideepError, assertInteger, invalidArg } from '../errors.js';
import type { KeyValueStore } from '../runtime/types.js';
import { callsOutOfStep, describeCall, type EpCall } from './calls.js';

export const DEFAULT_TRANSPORT_TIMEOUT_MS = 100_000;
/** The longest delay Node.js timers keep (about 24.8 days); a longer one would fire after 1 ms. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** A timeout in ms: an integer in [1, MAX_TIMEOUT_MS] (ERR_INVALID_ARG naming the limit otherwise). */
export function checkTimeoutMs(what: string, v: unknown): number {
  if (typeof v === 'number' && Number.isInteger(v) && v > MAX_TIMEOUT_MS) {
    throw invalidArg(what, `at most ${MAX_TIMEOUT_MS} ms (2^31 - 1, about 24.8 days: the longest timer Node.js keeps)`, v);
  }
  return assertInteger(what, v, 1, MAX_TIMEOUT_MS);
}

export interface CollectiveOptions {
  /** ERR_TIMEOUT when a peer has not arrived after this long (default 100000). */
  timeoutMs?: number;
}

export interface CpuTransport {
  readonly rank: number;
  readonly worldSize: number;
  /**
   * True when ranks share one address space and buffers travel by reference
   * (simulated ranks): senders may then pass views of their own data instead
   * of packed copies.
   */
  readonly sharesMemory?: boolean;
  /**
   * Sends `send[r]` to rank r and resolves with what every rank sent to this
   * one (index = source rank). Buffers may be passed by reference: do not
   * modify them after sending, nor the ones received.
   */
  allToAll(send: readonly Uint8Array[], options?: CollectiveOptions): Promise<Uint8Array[]>;
  /** Every rank's `value`, by rank. */
  allGather(value: Uint8Array, options?: CollectiveOptions): Promise<Uint8Array[]>;
  /** Idempotent; later calls are ERR_CLOSED. Does not close what the transport was built on. */
  close(): Promise<void>;
}

export function isCpuTransport(v: unknown): v is CpuTransport {
  const t = v as Partial<CpuTransport> | null;
  return typeof t === 'object' && t !== null && typeof t.allToAll === 'function' && typeof t.allGather === 'function';
}

type Kind = 'allToAll' | 'allGather';

function checkSend(kind: Kind, send: unknown, worldSize: number): void {
  if (!Array.isArray(send) || send.length !== worldSize || !send.every((b) => b instanceof Uint8Array)) {
    throw invalidArg(`${kind}: send`, `an array of ${worldSize} Uint8Arrays (one per rank)`, send);
  }
}

function timeoutOf(kind: Kind, options: CollectiveOptions | undefined): number {
  return checkTimeoutMs(`${kind}: options.timeoutMs`, options?.timeoutMs ?? DEFAULT_TRANSPORT_TIMEOUT_MS);
}

function listRanks(ranks: readonly number[]): string {
  return `${ranks.length === 1 ? 'rank' : 'ranks'} ${ranks.join(', ')}`;
}

// ---- simulated ranks ------------------------------------------------------------

interface Waiter {
  rank: number;
  resolve: (value: Uint8Array[]) => void;
  reject: (error: WideepError) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Round {
  kind: Kind;
  /** What each rank contributed (undefined: not arrived). */
  sends: (readonly Uint8Array[] | undefined)[];
  waiters: Waiter[];
  /** Set once the round can no longer complete; late arrivals get it too. */
  failure?: { code: 'ERR_TIMEOUT' | 'ERR_PROTOCOL' | 'ERR_PEER'; message: string };
}

/** The shared meeting point of the ranks of one createSimulatedRanks() call. */
class Rendezvous {
  readonly worldSize: number;
  readonly #rounds = new Map<number, Round>();
  readonly #closed: boolean[];

  constructor(worldSize: number) {
    this.worldSize = worldSize;
    this.#closed = new Array<boolean>(worldSize).fill(false);
  }

  join(rank: number, seq: number, kind: Kind, send: readonly Uint8Array[], timeoutMs: number): Promise<Uint8Array[]> {
    let round = this.#rounds.get(seq);
    if (!round) {
      round = { kind, sends: new Array(this.worldSize).fill(undefined), waiters: [] };
      this.#rounds.set(seq, round);
    }
    round.sends[rank] = send;
    const r = round;
    const closed = this.#closed.flatMap((c, i) => (c && r.sends[i] === undefined ? [i] : []));
    if (!round.failure && round.kind !== kind) {
      this.#fail(seq, round, 'ERR_PROTOCOL', `collective #${seq}: rank ${rank} called ${kind} while another rank called ${round.kind}; all ranks must call collectives in the same order`);
    } else if (!round.failure && closed.length > 0) {
      this.#fail(seq, round, 'ERR_PEER', `${kind} #${seq}: ${listRanks(closed)} closed ${closed.length === 1 ? 'its' : 'their'} transport`);
    }
    const promise = new Promise<Uint8Array[]>((resolve, reject) => {
      if (r.failure) return reject(new WideepError(r.failure.code, r.failure.message));
      const timer = setTimeout(() => {
        const missing = r.sends.flatMap((s, i) => (s === undefined ? [i] : []));
        this.#fail(seq, r, 'ERR_TIMEOUT', `${kind} #${seq}: ${listRanks(missing)} did not arrive within ${timeoutMs} ms`);
      }, timeoutMs);
      r.waiters.push({ rank, resolve, reject, timer });
    });
    if (round.sends.every((s) => s !== undefined)) this.#complete(seq, round);
    return promise;
  }

  close(rank: number): void {
    this.#closed[rank] = true;
    for (const [seq, round] of this.#rounds) {
      if (round.sends[rank] === undefined && !round.failure) this.#fail(seq, round, 'ERR_PEER', `${round.kind} #${seq}: rank ${rank} closed its transport`);
    }
  }

  #complete(seq: number, round: Round): void {
    this.#rounds.delete(seq);
    if (round.failure) return; // every waiter was rejected already
    for (const w of round.waiters) {
      clearTimeout(w.timer);
      w.resolve(round.sends.map((s) => (round.kind === 'allGather' ? s![0]! : s![w.rank]!)));
    }
  }

  #fail(seq: number, round: Round, code: 'ERR_TIMEOUT' | 'ERR_PROTOCOL' | 'ERR_PEER', message: string): void {
    round.failure = { code, message };
    for (const w of round.waiters) {
      clearTimeout(w.timer);
      w.reject(new WideepError(code, message));
    }
    round.waiters = [];
    // Keep the failed round so that late arrivals fail too, until all have come.
    if (round.sends.every((s) => s !== undefined)) this.#rounds.delete(seq);
  }
}

class SimulatedRank implements CpuTransport {
  readonly rank: number;
  readonly worldSize: number;
  readonly sharesMemory = true;
  readonly #rendezvous: Rendezvous;
  #seq = 0;
  #closed = false;

  constructor(rendezvous: Rendezvous, rank: number) {
    this.#rendezvous = rendezvous;
    this.rank = rank;
    this.worldSize = rendezvous.worldSize;
  }

  allToAll(send: readonly Uint8Array[], options?: CollectiveOptions): Promise<Uint8Array[]> {
    return this.#join('allToAll', send, options);
  }

  allGather(value: Uint8Array, options?: CollectiveOptions): Promise<Uint8Array[]> {
    if (!(value instanceof Uint8Array)) return Promise.reject(invalidArg('allGather: value', 'a Uint8Array', value));
    return this.#join('allGather', [value], options);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#rendezvous.close(this.rank);
  }

  // Not async: the sequence number must be taken at call time.
  #join(kind: Kind, send: readonly Uint8Array[], options: CollectiveOptions | undefined): Promise<Uint8Array[]> {
    try {
      if (this.#closed) throw new WideepError('ERR_CLOSED', `${kind}: simulated rank ${this.rank} is closed`);
      if (kind === 'allToAll') checkSend(kind, send, this.worldSize);
      const timeoutMs = timeoutOf(kind, options);
      return this.#rendezvous.join(this.rank, this.#seq++, kind, send, timeoutMs);
    } catch (e) {
      return Promise.reject(e);
    }
  }
}

/**
 * `worldSize` ranks in one process: call each rank's collective concurrently,
 * e.g. `await Promise.all(ranks.map((t) => t.allGather(...)))`.
 */
export function createSimulatedRanks(worldSize: number): CpuTransport[] {
  assertInteger('createSimulatedRanks: worldSize', worldSize, 1);
  const rendezvous = new Rendezvous(worldSize);
  return Array.from({ length: worldSize }, (_, rank) => new SimulatedRank(rendezvous, rank));
}

// ---- over a key-value store -------------------------------------------------------

/**
 * Collectives over a KeyValueStore: rank s writes `${prefix}/${seq}/${s}->${d}`
 * for every other rank d, which reads and deletes it, so the store holds only
 * messages in flight.
 */
export class StoreTransport implements CpuTransport {
  readonly rank: number;
  readonly worldSize: number;
  readonly prefix: string;
  readonly #store: KeyValueStore;
  #seq = 0;
  #closed = false;

  constructor(store: KeyValueStore, rank: number, worldSize: number, prefix: string) {
    if (typeof store !== 'object' || store === null || typeof store.get !== 'function') throw invalidArg('StoreTransport: store', 'a KeyValueStore', store);
    this.worldSize = assertInteger('StoreTransport: worldSize', worldSize, 1);
    this.rank = assertInteger('StoreTransport: rank', rank, 0, worldSize - 1);
    if (typeof prefix !== 'string' || prefix === '') throw invalidArg('StoreTransport: prefix', 'a non-empty string', prefix);
    this.#store = store;
    this.prefix = prefix;
  }

  allToAll(send: readonly Uint8Array[], options?: CollectiveOptions): Promise<Uint8Array[]> {
    try {
      this.#checkOpen('allToAll');
      checkSend('allToAll', send, this.worldSize);
      return this.#exchange('allToAll', this.#seq++, send, timeoutOf('allToAll', options));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  allGather(value: Uint8Array, options?: CollectiveOptions): Promise<Uint8Array[]> {
    try {
      this.#checkOpen('allGather');
      if (!(value instanceof Uint8Array)) throw invalidArg('allGather: value', 'a Uint8Array', value);
      const send = new Array<Uint8Array>(this.worldSize).fill(value);
      return this.#exchange('allGather', this.#seq++, send, timeoutOf('allGather', options));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #key(seq: number, src: number, dst: number): string {
    return `${this.prefix}/${seq}/${src}->${dst}`;
  }

  async #exchange(kind: Kind, seq: number, send: readonly Uint8Array[], timeoutMs: number): Promise<Uint8Array[]> {
    const me = this.rank;
    const store = this.#store;
    await Promise.all(send.map((b, dst) => (dst === me ? undefined : store.set(this.#key(seq, me, dst), b))));
    return Promise.all(
      send.map(async (own, src) => {
        if (src === me) return own;
        const key = this.#key(seq, src, me);
        let value: Uint8Array;
        try {
          value = await store.get(key, { timeoutMs });
        } catch (e) {
          if (e instanceof WideepError && e.code === 'ERR_TIMEOUT') {
            throw new WideepError('ERR_TIMEOUT', `${kind} #${seq} on rank ${me}: rank ${src} sent nothing within ${timeoutMs} ms (key ${key})`, { cause: e });
          }
          throw e;
        }
        await store.delete(key);
        return value;
      }),
    );
  }

  #checkOpen(kind: Kind): void {
    if (this.#closed) throw new WideepError('ERR_CLOSED', `${kind}: this StoreTransport is closed`);
  }
}

/**
 * cleanLowLatencyBuffer's common verdict: the ranks exchange their call and
 * their counts of live low-latency results, and every rank throws ERR_BUSY if
 * any holds one (ERR_PROTOCOL if some rank is in another call).
 */
export async function agreeNoLowLatencyResults(transport: CpuTransport, live: number, timeoutMs: number, call: EpCall): Promise<void> {
  const where = 'cleanLowLatencyBuffer';
  const words = (b: Uint8Array) => {
    if (b.byteLength !== 12) throw new WideepError('ERR_PROTOCOL', `${where}: a verdict of ${b.byteLength} bytes, expected 12`);
    const v = new DataView(b.buffer, b.byteOffset, 12);
    return [0, 4, 8].map((at) => v.getInt32(at, true)) as [number, number, number];
  };
  const sending = transport.allGather(new Uint8Array(new Int32Array([call.buffer, call.number, live]).buffer), { timeoutMs });
  call.started = true;
  const all = (await sending).map(words);
  all.forEach(([buffer, number], r) => {
    const theirs = describeCall(where, number) + (buffer === call.buffer ? '' : ' of another EpBuffer');
    if (buffer !== call.buffer || number !== call.number) throw callsOutOfStep(where, r, theirs, describeCall(where, call.number));
  });
  const busy = all.flatMap(([, , n], r) => (n > 0 ? [`rank ${r} (${n})`] : []));
  if (busy.length === 0) return;
  throw new WideepError(
    'ERR_BUSY',
    `cleanLowLatencyBuffer: low-latency results are alive on ${busy.join(', ')}; every rank refused. ` +
      'Finish them with lowLatencyCombine() (and its hook) or release() first',
  );
}
