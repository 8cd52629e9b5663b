/**
 * Every rank's verdict on one call across nodes, on the host, before rows
 * move: first among same-index ranks (one per node), then within each node,
 * so that a failure on any rank reaches every rank in two hops. A rank that
 * failed still takes both steps, flagged, so the call fails on every rank at
 * once (ERR_PEER naming it) and the ranks stay in step. Each step is bounded
 * by the buffer's timeoutMs: a dead rank gives ERR_TIMEOUT naming it.
 */
import { WideepError } from '../../../errors.js';
import type { KeyValueStore } from '../../../runtime/types.js';
import { callsOutOfStep, describeCall, localFailureNumber, peerFailedLocally, type EpCall } from '../../calls.js';
import { StoreTransport } from '../../transport.js';
import type { EpConfig } from '../../types.js';

/** A rank that failed the call, and how (a local failure number, src/ep/calls.ts). */
export interface Failed {
  rank: number;
  failure: number;
}

const KINDS = ['dispatch', 'combine'] as const;
export type VerdictKind = (typeof KINDS)[number];
/** [buffer, call number, kind, failed rank + 1 (0: none), failure]. */
const WORDS = 5;

function encode(kind: VerdictKind, call: EpCall, failed: Failed | undefined, extra: ArrayLike<number>): Uint8Array {
  const words = new Int32Array(WORDS + extra.length);
  words.set([call.buffer, call.number, KINDS.indexOf(kind), failed ? failed.rank + 1 : 0, failed?.failure ?? 0]);
  words.set(extra, WORDS);
  return new Uint8Array(words.buffer);
}

function decode(bytes: Uint8Array): Int32Array {
  return new Int32Array(bytes.slice().buffer);
}

export class Verdicts {
  readonly #config: EpConfig;
  readonly #rail: StoreTransport;
  readonly #node: StoreTransport;
  /** What the last rail step found wrong with this rank's peers' calls. */
  #outOfStep: WideepError | undefined;

  constructor(store: KeyValueStore, config: EpConfig, prefix: string) {
    const P = config.ranksPerNode;
    const node = Math.floor(config.rank / P);
    const local = config.rank % P;
    this.#config = config;
    this.#rail = new StoreTransport(store, node, config.worldSize / P, `${prefix}/rail${local}`);
    this.#node = new StoreTransport(store, local, P, `${prefix}/node${node}`);
  }

  /**
   * The first failure among this rank's same-index ranks (one per node),
   * this rank's own included. A peer in another call makes it this rank's
   * failure, so that its node hears of it; node() then throws its ERR_PROTOCOL.
   */
  async rail(where: string, kind: VerdictKind, call: EpCall, failed: Failed | undefined): Promise<Failed | undefined> {
    this.#outOfStep = undefined;
    const all = await this.#rail.allGather(encode(kind, call, failed, []), { timeoutMs: this.#config.timeoutMs });
    try {
      return this.#agree(where, kind, call, all.map(decode), (a) => a * this.#config.ranksPerNode + (this.#config.rank % this.#config.ranksPerNode)).failed;
    } catch (e) {
      this.#outOfStep = e as WideepError;
      return { rank: this.#config.rank, failure: localFailureNumber(e) };
    }
  }

  /**
   * The node's step: every local rank's `extra` (by local index), unless a
   * rank failed the call anywhere: then ERR_PEER naming it, or this rank's
   * own error (`mine`) where it is the one.
   */
  async node(where: string, kind: VerdictKind, call: EpCall, failed: Failed | undefined, extra: ArrayLike<number>, mine?: () => Error): Promise<Int32Array[]> {
    const P = this.#config.ranksPerNode;
    const first = Math.floor(this.#config.rank / P) * P;
    const all = await this.#node.allGather(encode(kind, call, failed, extra), { timeoutMs: this.#config.timeoutMs });
    const verdict = this.#agree(where, kind, call, all.map(decode), (j) => first + j);
    if (verdict.failed) {
      if (verdict.failed.rank === this.#config.rank) {
        if (this.#outOfStep) throw this.#outOfStep;
        if (mine) throw mine();
      }
      throw peerFailedLocally(where, kind, [verdict.failed]);
    }
    return verdict.extras;
  }

  async close(): Promise<void> {
    await this.#rail.close();
    await this.#node.close();
  }

  /** ERR_PROTOCOL if a peer is in another call; the first failure any message names. */
  #agree(where: string, kind: VerdictKind, call: EpCall, all: Int32Array[], rankOf: (i: number) => number): { failed: Failed | undefined; extras: Int32Array[] } {
    let failed: Failed | undefined;
    all.forEach((w, i) => {
      if (w[0] !== call.buffer || w[1] !== call.number || w[2] !== KINDS.indexOf(kind)) {
        const theirs = describeCall(KINDS[w[2]!] ?? 'an unknown call', w[1]!) + (w[0] === call.buffer ? '' : ' of another EpBuffer');
        throw callsOutOfStep(where, rankOf(i), theirs, describeCall(kind, call.number));
      }
      if (!failed && w[3]! > 0) failed = { rank: w[3]! - 1, failure: w[4]! };
    });
    return { failed, extras: all.map((w) => w.subarray(WORDS)) };
  }
}

/** A rank's own error for top-k ids out of range, which its kernels found. */
export function badIdsError(where: string, count: number, numExperts: number): WideepError {
  return new WideepError('ERR_INVALID_ARG', `${where}: topkIdx holds ${count} id(s) outside [-1, ${numExperts}); the call failed on every rank and nothing moved`);
}
