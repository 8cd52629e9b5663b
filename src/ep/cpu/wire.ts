/**
 * How the cpu backend talks. Every collective operation has up to three steps:
 *
 * 1. meta: one framed message per peer (headers and small arrays), sent at
 *    call time. Every rank sees every header, so checks on them (same
 *    operation, agreeing arguments, numWorstTokens overflow) give every rank
 *    the same verdict, and all ranks stop here together.
 * 2. bulk: the row bytes. On a shared-memory transport a sender passes views
 *    of its own buffers and receivers index them; otherwise rows are packed.
 * 3. on a shared-memory transport, a barrier, so that no rank returns (and
 *    lets its caller reuse its input) while a peer may still be reading it.
 *
 * A framed message is a list of sections, each on an 8-byte boundary:
 *   u32 sectionCount, u32 byteLength[sectionCount], pad, section0, pad, ...
 * Section 0 is an Int32Array header that starts with the call's words
 * (CALL_WORDS): the operation, the buffer, the call's number and this rank's
 * local failure (src/ep/calls.ts). A rank whose call failed before it
 * communicated sends those words alone.
 */
import { WideepError } from '../../errors.js';
import { callsOutOfStep, describeCall, peerFailedLocally, type EpCall } from '../calls.js';
import type { CpuTransport } from '../transport.js';
import { copyRows } from './kernels.js';

export const OP = {
  dispatch: 1,
  cachedDispatch: 2,
  combine: 3,
  lowLatencyDispatch: 4,
  lowLatencyCombine: 5,
} as const;

export type OpName = keyof typeof OP;

const OP_NAMES = Object.fromEntries(Object.entries(OP).map(([name, code]) => [code, name])) as Record<number, string>;

const EMPTY = new Uint8Array(0);
const align8 = (n: number) => (n + 7) & ~7;

/** A message with sections of the given byte sizes, to be filled in place. */
export function allocMessage(sizes: readonly number[]): { bytes: Uint8Array; sections: Uint8Array[] } {
  let offset = align8(4 + 4 * sizes.length);
  const offsets = sizes.map((size) => {
    const at = offset;
    offset = align8(offset + size);
    return at;
  });
  const bytes = new Uint8Array(offset);
  const head = new Uint32Array(bytes.buffer, 0, 1 + sizes.length);
  head[0] = sizes.length;
  head.set(sizes, 1);
  return { bytes, sections: sizes.map((size, i) => bytes.subarray(offsets[i]!, offsets[i]! + size)) };
}

/** `bytes`, copied if a transport delivered it at an offset typed views cannot use. */
export function aligned(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
}

/** The sections of a received framed message. */
export function parseMessage(where: string, from: number, received: Uint8Array): Uint8Array[] {
  const bytes = aligned(received);
  const bad = () => new WideepError('ERR_PROTOCOL', `${where}: the message from rank ${from} is malformed (${bytes.length} bytes)`);
  if (bytes.length < 4) throw bad();
  const count = new Uint32Array(bytes.buffer, bytes.byteOffset, 1)[0]!;
  if (count < 1 || count > 64 || bytes.length < 4 + 4 * count) throw bad(); // section 0 is the header
  const sizes = new Uint32Array(bytes.buffer, bytes.byteOffset + 4, count);
  let offset = align8(4 + 4 * count);
  const sections: Uint8Array[] = [];
  for (const size of sizes) {
    if (offset + size > bytes.length) throw bad();
    sections.push(bytes.subarray(offset, offset + size));
    offset = align8(offset + size);
  }
  return sections;
}

/** ERR_PROTOCOL unless sections 1.. of rank `from`'s message have the expected byte sizes. */
export function checkSections(where: string, from: number, sections: readonly Uint8Array[], sizes: readonly number[]): void {
  if (sections.length !== sizes.length + 1 || sizes.some((size, i) => sections[i + 1]!.byteLength !== size)) {
    throw new WideepError(
      'ERR_PROTOCOL',
      `${where}: the message from rank ${from} has sections of [${sections.slice(1).map((s) => s.byteLength)}] bytes, expected [${sizes}]`,
    );
  }
}

export function int32View(section: Uint8Array): Int32Array {
  return new Int32Array(section.buffer, section.byteOffset, section.byteLength >> 2);
}

export function float32View(section: Uint8Array): Float32Array {
  return new Float32Array(section.buffer, section.byteOffset, section.byteLength >> 2);
}

export function uint16View(section: Uint8Array): Uint16Array {
  return new Uint16Array(section.buffer, section.byteOffset, section.byteLength >> 1);
}

export function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** [op, buffer, number, local failure]: the first words of every header. */
export const CALL_WORDS = 4;

/** The call's words of a header for `op`, this rank not failed. */
export function callWords(op: OpName, call: EpCall): number[] {
  return [OP[op], call.buffer, call.number, 0];
}

const callOf = (h: Int32Array) => describeCall(OP_NAMES[h[0]!] ?? `an unknown operation (${h[0]})`, h[2]!);

/**
 * Checks that every rank is in the same call of the same buffer
 * (ERR_PROTOCOL), that none failed it locally (ERR_PEER, naming them), and
 * that every rank called the same operation (ERR_PROTOCOL). Every rank sees
 * every header, so every rank gives the same verdict.
 */
export function checkCall(where: string, op: OpName, call: EpCall, headers: readonly Int32Array[]): void {
  const mine = describeCall(op, call.number);
  headers.forEach((h, src) => {
    if (h.length < CALL_WORDS) throw new WideepError('ERR_PROTOCOL', `${where}: the header from rank ${src} is malformed (${h.length} words)`);
    if (h[1] !== call.buffer) throw callsOutOfStep(where, src, `${callOf(h)} of another EpBuffer`, mine);
    if (h[2] !== call.number) throw callsOutOfStep(where, src, callOf(h), mine);
  });
  const failed = headers.flatMap((h, rank) => (h[3] !== 0 ? [{ rank, failure: h[3]! }] : []));
  if (failed.length > 0) throw peerFailedLocally(where, call.kind, failed);
  headers.forEach((h, src) => {
    if (h[0] !== OP[op]) {
      throw new WideepError(
        'ERR_PROTOCOL',
        `${where}: rank ${src} called ${OP_NAMES[h[0]!] ?? `an unknown operation (${h[0]})`} where this rank called ${op}; ` +
          'all ranks must call the collective EpBuffer methods in the same order',
      );
    }
  });
}

/** A header field every rank must agree on, with how to show it in an error. */
export type AgreedField = readonly [index: number, name: string, show?: (v: number) => string];

/**
 * Checks that every rank agrees on `fields` (ERR_INVALID_ARG), once
 * checkCall passed. Every rank sees every header, so every rank reports the
 * same disagreement.
 */
export function checkAgreement(where: string, headers: readonly Int32Array[], fields: readonly AgreedField[]): void {
  for (const [index, name, show = String] of fields) {
    const src = headers.findIndex((h) => h[index] !== headers[0]![index]);
    if (src >= 0) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `${where}: ranks disagree on ${name}: rank 0 has ${show(headers[0]![index]!)}, rank ${src} has ${show(headers[src]![index]!)}`,
      );
    }
  }
}

/** The first WideepError that `check` throws for any source rank (checks whose failure only this rank sees). */
export function firstProblem<T>(items: readonly T[], check: (item: T, src: number) => void): WideepError | undefined {
  try {
    items.forEach(check);
    return undefined;
  } catch (e) {
    if (e instanceof WideepError) return e;
    throw e;
  }
}

/** Bulk rows for one peer: the whole `source` on a shared-memory transport (receivers index it), else the listed rows packed. */
export function rowsFor(source: Uint8Array, rows: ArrayLike<number>, rowBytes: number, shared: boolean): Uint8Array {
  if (shared) return source;
  const out = new Uint8Array(rows.length * rowBytes);
  copyRows(out, source, rows, rowBytes);
  return out;
}

/** Row of the i-th listed row (source row `row`) in a rowsFor message. */
export function rowIndex(shared: boolean, i: number, row: number): number {
  return shared ? row : i;
}

/** One collective operation of the cpu backend (see the top of this file). */
export class Collective {
  readonly shared: boolean;
  readonly #where: string;
  readonly #transport: CpuTransport;
  readonly #options: { timeoutMs: number };
  readonly #meta: Promise<Uint8Array[]>;

  /** Sends the meta messages at once, so that calls keep their order; from here on `call` has started. */
  constructor(where: string, transport: CpuTransport, timeoutMs: number, meta: Uint8Array[], call: EpCall) {
    this.#where = where;
    this.#transport = transport;
    this.#options = { timeoutMs };
    this.shared = transport.sharesMemory === true;
    this.#meta = transport.allToAll(meta, this.#options);
    call.started = true;
  }

  /** The sections of every rank's meta message to this rank. */
  async meta(): Promise<Uint8Array[][]> {
    return (await this.#meta).map((m, src) => parseMessage(this.#where, src, m));
  }

  /**
   * Exchanges the bulk messages and assembles the result from them. A rank
   * that found a problem of its own after the meta step passes it as `send`:
   * it still takes part (sending nothing) so that no peer waits for it.
   */
  async bulk<T>(send: Uint8Array[] | WideepError, assemble: (received: Uint8Array[]) => T): Promise<T> {
    const failed = send instanceof WideepError;
    const received = await this.#transport.allToAll(failed ? new Array<Uint8Array>(this.#transport.worldSize).fill(EMPTY) : send, this.#options);
    try {
      if (failed) throw send;
      return assemble(received.map(aligned));
    } finally {
      if (this.shared) await this.#transport.allGather(EMPTY, this.#options);
    }
  }
}

/**
 * This rank's part in a call that failed here before it communicated: the
 * call's words with the failure, and nothing else. Its peers stop at the meta
 * step with ERR_PEER; what they sent back is read (so the store keeps no
 * message) and dropped.
 */
export function sendLocalFailure(where: string, op: OpName, transport: CpuTransport, timeoutMs: number, call: EpCall, failure: number): void {
  const { bytes, sections } = allocMessage([4 * CALL_WORDS]);
  int32View(sections[0]!).set([OP[op], call.buffer, call.number, failure]);
  new Collective(where, transport, timeoutMs, new Array<Uint8Array>(transport.worldSize).fill(bytes), call).meta().catch(() => {});
}
