/**
 * The exchanges of a cpu call that crosses nodes, after its meta step
 * (src/ep/cpu/wire.ts): one all-to-all per leg, every rank taking part in
 * every leg. A rank that meets a problem (a peer's malformed message, counts
 * that disagree with the headers) sends nothing from then on but still takes
 * part, so that no peer waits for it; it throws the problem once every leg
 * is over. Messages are packed copies, never views of a caller's tensors, so
 * no closing barrier is needed.
 */
import { WideepError } from '../../errors.js';
import type { CpuTransport } from '../transport.js';
import { parseMessage } from './wire.js';

const EMPTY = new Uint8Array(0);

export class Legs {
  readonly #where: string;
  readonly #transport: CpuTransport;
  readonly #options: { timeoutMs: number };
  #problem: unknown;

  constructor(where: string, transport: CpuTransport, timeoutMs: number) {
    this.#where = where;
    this.#transport = transport;
    this.#options = { timeoutMs };
  }

  /** Records a problem found outside a leg (it is thrown by finish()). */
  fail(problem: WideepError | undefined): void {
    this.#problem ??= problem;
  }

  /**
   * One leg: `send(dst)` is the framed message for rank dst, or undefined for
   * none; `peers` are the ranks whose messages this rank reads (their
   * sections, by source rank). Undefined once a problem was met.
   */
  async run<T>(send: (dst: number) => Uint8Array | undefined, peers: readonly number[], use: (sections: (Uint8Array[] | undefined)[]) => T): Promise<T | undefined> {
    const R = this.#transport.worldSize;
    let out: Uint8Array[] | undefined;
    if (this.#problem === undefined) out = this.#guard(() => Array.from({ length: R }, (_, dst) => send(dst) ?? EMPTY));
    const received = await this.#transport.allToAll(out ?? new Array<Uint8Array>(R).fill(EMPTY), this.#options);
    if (this.#problem !== undefined) return undefined;
    return this.#guard(() => {
      const sections: (Uint8Array[] | undefined)[] = new Array(R).fill(undefined);
      for (const src of peers) sections[src] = parseMessage(this.#where, src, received[src]!);
      return use(sections);
    });
  }

  /** Throws the first problem this rank met, if any. */
  finish(): void {
    if (this.#problem !== undefined) throw this.#problem;
  }

  #guard<T>(f: () => T): T | undefined {
    try {
      return f();
    } catch (e) {
      this.#problem = e;
      return undefined;
    }
  }
}
