/**
 * The store's wire format. Every message is a frame: a u32 (big-endian) body
 * length followed by the body. A request body is `u8 op | u32 id | fields`, a
 * response body is `u8 status | u32 id | fields`; ids let a client pipeline
 * requests and match answers that come back out of order (a `get` that waits
 * does not hold up a `set` behind it). Fields are u8, u32, f64, or byte
 * strings written as `u32 length | bytes`. Keys are UTF-8.
 *
 * A connection starts with a handshake (see auth.ts for the proofs):
 *   client → Hello  { u32 magic, u32 version, bytes clientNonce }
 *   server → Ok     { u32 magic, u32 version, u8 tokenRequired, bytes serverNonce, bytes serverProof }
 *   client → Auth   { bytes clientProof, bytes identity }
 *   server → Ok, or an error and the end of the connection.
 * Until it completes, a frame may not exceed MAX_HANDSHAKE_FRAME_BYTES and no
 * other request is served.
 */
import { WideepError, type ErrorCode } from '../../errors.js';
import type { StoreValue } from '../types.js';

/** Longest key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 4096;
/** Largest value, in bytes. */
export const MAX_VALUE_BYTES = 256 * 2 ** 20;
/** Largest frame either side accepts: a compareSet carries two values and a key, plus headers. */
export const MAX_FRAME_BYTES = 2 * MAX_VALUE_BYTES + MAX_KEY_BYTES + 64;
/** Largest frame either side takes before the handshake completes: a hello, a proof with an identity, or an error. */
export const MAX_HANDSHAKE_FRAME_BYTES = 1024;
/** Opens the hello both ways, so that a wrong service on the port is noticed at once. */
export const PROTOCOL_MAGIC = 0x77657331; // 'wes1'
/** Version 2: the authenticated handshake. */
export const PROTOCOL_VERSION = 2;

export const Op = {
  Hello: 1,
  Set: 2,
  Get: 3,
  Wait: 4,
  Add: 5,
  CompareSet: 6,
  Delete: 7,
  Barrier: 8,
  Auth: 9,
} as const;
export type Op = (typeof Op)[keyof typeof Op];

export const Status = { Ok: 0, Error: 1 } as const;

/** Time limits travel as f64 milliseconds; Infinity means "no limit". */
export function checkTimeout(what: string, v: unknown): number {
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0) {
    throw new WideepError('ERR_INVALID_ARG', `${what}: expected a number of milliseconds >= 0 (or Infinity), got ${String(v)}`);
  }
  return v;
}

const encoder = new TextEncoder();

export function toBytes(value: StoreValue): Uint8Array {
  return typeof value === 'string' ? encoder.encode(value) : value;
}

export function keyBytes(key: unknown): Uint8Array {
  if (typeof key !== 'string' || key.length === 0) {
    throw new WideepError('ERR_INVALID_ARG', `store key: expected a non-empty string, got ${JSON.stringify(key)}`);
  }
  const bytes = encoder.encode(key);
  if (bytes.length > MAX_KEY_BYTES) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `store key: ${bytes.length} bytes exceeds the limit of ${MAX_KEY_BYTES} bytes (key starts ${JSON.stringify(key.slice(0, 40))})`,
    );
  }
  return bytes;
}

export function valueBytes(what: string, value: unknown): Uint8Array {
  if (typeof value !== 'string' && !(value instanceof Uint8Array)) {
    throw new WideepError('ERR_INVALID_ARG', `${what}: expected a Uint8Array or a string, got ${typeof value}`);
  }
  const bytes = toBytes(value);
  if (bytes.length > MAX_VALUE_BYTES) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `${what}: ${bytes.length} bytes exceeds the store's value limit of ${MAX_VALUE_BYTES} bytes (256 MiB)`,
    );
  }
  return bytes;
}

/** One field of a message being written. */
export type Field = { u8: number } | { u32: number } | { f64: number } | { bytes: Uint8Array };

function fieldSize(f: Field): number {
  if ('u8' in f) return 1;
  if ('u32' in f) return 4;
  if ('f64' in f) return 8;
  return 4 + f.bytes.length;
}

/** Encodes a whole frame (length prefix included) into one buffer. */
export function encodeFrame(head: number, id: number, fields: readonly Field[]): Buffer {
  let body = 5;
  for (const f of fields) body += fieldSize(f);
  if (body > MAX_FRAME_BYTES) {
    throw new WideepError('ERR_INVALID_ARG', `store message of ${body} bytes exceeds the frame limit of ${MAX_FRAME_BYTES} bytes`);
  }
  const buf = Buffer.allocUnsafe(4 + body);
  buf.writeUInt32BE(body, 0);
  buf.writeUInt8(head, 4);
  buf.writeUInt32BE(id, 5);
  let at = 9;
  for (const f of fields) {
    if ('u8' in f) at = buf.writeUInt8(f.u8, at);
    else if ('u32' in f) at = buf.writeUInt32BE(f.u32, at);
    else if ('f64' in f) at = buf.writeDoubleBE(f.f64, at);
    else {
      at = buf.writeUInt32BE(f.bytes.length, at);
      buf.set(f.bytes, at);
      at += f.bytes.length;
    }
  }
  return buf;
}

/**
 * An Ok answer whose one field is `value`, as two buffers: the head, and a
 * view of the value itself. The server keeps values immutable, so a hundred
 * waiters answered with one value queue one copy of it, not a hundred.
 */
export function encodeValueAnswer(id: number, value: Uint8Array): [Buffer, Buffer] {
  const head = Buffer.allocUnsafe(13);
  head.writeUInt32BE(9 + value.length, 0);
  head.writeUInt8(Status.Ok, 4);
  head.writeUInt32BE(id, 5);
  head.writeUInt32BE(value.length, 9);
  return [head, Buffer.from(value.buffer, value.byteOffset, value.byteLength)];
}

export function protocolError(message: string): WideepError {
  return new WideepError('ERR_PROTOCOL', `store protocol: ${message}`);
}

/** Reads the fields of one frame body, checking every bound. */
export class FrameReader {
  #at = 0;
  constructor(private readonly buf: Buffer) {}

  #need(n: number): void {
    if (this.#at + n > this.buf.length) throw protocolError(`truncated message (${this.buf.length} bytes)`);
  }
  u8(): number {
    this.#need(1);
    return this.buf.readUInt8(this.#at++);
  }
  u32(): number {
    this.#need(4);
    const v = this.buf.readUInt32BE(this.#at);
    this.#at += 4;
    return v;
  }
  f64(): number {
    this.#need(8);
    const v = this.buf.readDoubleBE(this.#at);
    this.#at += 8;
    return v;
  }
  /** A view into the frame (no copy): copy it before keeping it. */
  bytes(max: number): Buffer {
    const n = this.u32();
    if (n > max) throw protocolError(`field of ${n} bytes exceeds ${max}`);
    this.#need(n);
    const v = this.buf.subarray(this.#at, this.#at + n);
    this.#at += n;
    return v;
  }
  string(max: number): string {
    return this.bytes(max).toString('utf8');
  }
  end(): void {
    if (this.#at !== this.buf.length) throw protocolError(`${this.buf.length - this.#at} stray bytes after a message`);
  }
}

/**
 * Cuts a byte stream into frame bodies, one at a time, so that the limit can
 * change between two frames of one chunk (it grows once a connection has
 * authenticated). A length over the limit is refused from the header alone,
 * before anything is buffered for the body: a peer cannot make the other side
 * hold more than one frame of the current limit.
 */
export class FrameDecoder {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #bodyLength = -1;

  constructor(private maxFrameBytes: number) {}

  /** Raises (or lowers) the limit for the frames not yet read. */
  setLimit(maxFrameBytes: number): void {
    this.maxFrameBytes = maxFrameBytes;
  }

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /** The next complete body, or undefined; throws ERR_PROTOCOL on an oversize frame. */
  next(): Buffer | undefined {
    if (this.#bodyLength < 0) {
      if (this.#buffered < 4) return undefined;
      const n = this.#take(4).readUInt32BE(0);
      if (n > this.maxFrameBytes) throw protocolError(`frame of ${n} bytes exceeds the limit of ${this.maxFrameBytes}`);
      this.#bodyLength = n;
    }
    if (this.#buffered < this.#bodyLength) return undefined;
    const body = this.#take(this.#bodyLength);
    this.#bodyLength = -1;
    return body;
  }

  #take(n: number): Buffer {
    this.#buffered -= n;
    const first = this.#chunks[0]!;
    if (first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.length, n - at);
      c.copy(out, at, 0, k);
      at += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    return out;
  }
}

/** An error answer: the code and message travel so the client rethrows the same error. */
export function encodeError(id: number, e: WideepError): Buffer {
  return encodeFrame(Status.Error, id, [{ bytes: encoder.encode(e.code) }, { bytes: encoder.encode(e.message) }]);
}

export function decodeError(r: FrameReader): WideepError {
  const code = r.string(256) as ErrorCode;
  const message = r.string(MAX_FRAME_BYTES);
  return new WideepError(code, message);
}

/** Renders a list of keys for messages, eliding long lists. */
export function describeKeys(keys: readonly string[]): string {
  const shown = keys.slice(0, 8).map((k) => JSON.stringify(k.length > 80 ? k.slice(0, 80) + '…' : k));
  return keys.length > 8 ? `${shown.join(', ')} and ${keys.length - 8} more` : shown.join(', ');
}

export function describeTimeout(ms: number): string {
  return ms >= 1000 && ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** Longest delay setTimeout honours; a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * setTimeout for a limit in milliseconds that may be Infinity (or beyond
 * what a Node timer can hold): then there is no timer at all.
 */
export function startTimer(ms: number, fn: () => void, options?: { unref?: boolean }): NodeJS.Timeout | undefined {
  if (!(ms <= MAX_TIMER_MS)) return undefined;
  const t = setTimeout(fn, ms);
  if (options?.unref) t.unref();
  return t;
}
