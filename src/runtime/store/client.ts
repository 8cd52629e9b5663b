/**
 * The store client: one TCP connection, requests pipelined under ids. Waiting
 * happens on the server; the client only holds a backstop timer per request,
 * so a frozen server still ends in ERR_TIMEOUT. When the connection drops,
 * every pending and later call rejects with ERR_PEER. The socket is ref'd only
 * while a request is in flight: an idle client never keeps Node alive.
 */
import { connect as netConnect, type Socket } from 'node:net';

import { WideepError, assertInteger, isWideepError } from '../../errors.js';
import type { KeyValueStore, StoreValue } from '../types.js';
import { checkToken } from './auth.js';
import { CLIENT_HANDSHAKE_MS, answerHello, retryableHandshakeError, startHandshake } from './handshake.js';
import { checkIdentity } from './identity.js';
import {
  FrameDecoder,
  FrameReader,
  MAX_FRAME_BYTES,
  MAX_HANDSHAKE_FRAME_BYTES,
  MAX_VALUE_BYTES,
  Op,
  Status,
  checkTimeout,
  decodeError,
  describeKeys,
  describeTimeout,
  encodeFrame,
  keyBytes,
  protocolError,
  startTimer,
  valueBytes,
  type Field,
} from './protocol.js';
import type { TcpStoreServer } from './server.js';

/** Default limit for connecting and for each call: 300 s. */
export const DEFAULT_STORE_TIMEOUT_MS = 300_000;
/** How long past a waiting call's own limit the client waits for the server's answer. */
const ANSWER_GRACE_MS = 5_000;
const FIRST_RETRY_MS = 25;
const MAX_RETRY_MS = 1_000;

export interface StoreClientOptions {
  host: string;
  port: number;
  /** Participants of `barrier()`; barrier refuses to run without it. */
  worldSize?: number;
  /** Limit for connecting and the default limit for each call (ms, Infinity allowed); 300 s. */
  timeoutMs?: number;
  /** A server this process hosts: closed with the client, after the other clients have left. */
  server?: TcpStoreServer;
  /** The job's secret, proven to the server (and the server's proven back) without sending it. */
  token?: string;
  /**
   * What this connection speaks for, `node/<i>` or `rank/<r>`: one connection
   * at a time may hold it, and only it may write keys under `@<identity>/`.
   */
  identity?: string;
  /** Gives up connecting (ERR_CLOSED) when aborted. */
  signal?: AbortSignal;
}

interface Pending {
  what: string;
  resolve(r: FrameReader): void;
  reject(e: WideepError): void;
  timer: NodeJS.Timeout | undefined;
}

function aborted(where: string): WideepError {
  return new WideepError('ERR_CLOSED', `store: connecting to ${where} was cancelled`);
}

/** Resolves after `ms`, or rejects at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal | undefined, where: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted(where));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function attempt(host: string, port: number, limitMs: number, signal: AbortSignal | undefined): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host, port });
    const settle = (e?: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      if (e) {
        socket.destroy();
        reject(e);
      } else {
        resolve(socket);
      }
    };
    const onAbort = () => settle(aborted(`${host}:${port}`));
    const timer = startTimer(limitMs, () => settle(new Error('connection attempt timed out')));
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('error', (e) => settle(e));
    socket.once('connect', () => settle());
  });
}

export class TcpStoreClient implements KeyValueStore {
  readonly host: string;
  readonly port: number;
  readonly worldSize: number | undefined;
  readonly timeoutMs: number;
  /** The identity this connection registered, if any. */
  readonly identity: string | undefined;
  readonly #socket: Socket;
  /** A peer that is not (yet) known to be a store may not make this client buffer more than a handshake frame. */
  readonly #decoder = new FrameDecoder(MAX_HANDSHAKE_FRAME_BYTES);
  #server: TcpStoreServer | undefined;
  readonly #pending = new Map<number, Pending>();
  readonly #generations = new Map<string, number>();
  #nextId = 1;
  #broken: WideepError | undefined;
  #socketError: string | undefined;
  #closing: Promise<void> | undefined;

  private constructor(socket: Socket, options: Required<Pick<StoreClientOptions, 'host' | 'port' | 'timeoutMs'>> & StoreClientOptions) {
    this.host = options.host;
    this.port = options.port;
    this.worldSize = options.worldSize;
    this.timeoutMs = options.timeoutMs;
    this.identity = options.identity;
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.#decoder.push(chunk);
        for (let frame = this.#decoder.next(); frame; frame = this.#decoder.next()) this.#answer(frame);
      } catch (e) {
        this.#fail(isWideepError(e) ? e : protocolError(String(e)));
      }
    });
    socket.on('error', (e) => {
      this.#socketError = e.message;
    });
    socket.on('close', () =>
      this.#fail(
        new WideepError(
          'ERR_PEER',
          `store server at ${this.#where} closed the connection${this.#socketError ? ` (${this.#socketError})` : ''}`,
        ),
      ),
    );
    this.#updateRef();
  }

  /**
   * Connects, retrying with backoff until `timeoutMs` (the server may start
   * after its clients), then runs the handshake: a peer that does not answer
   * it like a wideep store within seconds is ERR_PROTOCOL at once, and so is a
   * store that does not share this client's token.
   */
  static async connect(options: StoreClientOptions): Promise<TcpStoreClient> {
    const host = options?.host;
    if (typeof host !== 'string' || host === '') {
      throw new WideepError('ERR_INVALID_ARG', `store host: expected a non-empty string, got ${JSON.stringify(host)}`);
    }
    const port = assertInteger('store port', options.port, 1, 65535);
    if (options.worldSize !== undefined) assertInteger('store worldSize', options.worldSize, 1);
    const timeoutMs = checkTimeout('store timeoutMs', options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS);
    const token = checkToken('store token', options.token);
    const identity = checkIdentity(options.identity);
    const signal = options.signal;
    const where = `${host}:${port}`;
    const deadline = Date.now() + timeoutMs;
    let delay = FIRST_RETRY_MS;
    let last = '';
    for (;;) {
      if (signal?.aborted) throw aborted(where);
      const remaining = deadline - Date.now();
      let socket: Socket | undefined;
      try {
        socket = await attempt(host, port, remaining, signal);
      } catch (e) {
        if (isWideepError(e)) throw e; // cancelled
        last = (e as Error).message;
      }
      if (socket) {
        const client = new TcpStoreClient(socket, { ...options, host, port, timeoutMs, token, identity });
        try {
          await client.#handshake(token, identity ?? '', remaining, signal);
          client.#server = options.server;
          return client;
        } catch (e) {
          await client.close();
          if (!retryableHandshakeError(e)) throw e;
          last = (e as Error).message;
        }
      }
      if (Date.now() + delay >= deadline) {
        throw new WideepError('ERR_TIMEOUT', `could not connect to the store at ${where} within ${describeTimeout(timeoutMs)}: ${last}`);
      }
      await sleep(delay, signal, where);
      delay = Math.min(2 * delay, MAX_RETRY_MS);
    }
  }

  /**
   * Hello, then the proofs. An answer that is not a store's, or none within
   * CLIENT_HANDSHAKE_MS, is ERR_PROTOCOL naming the address; none before the
   * connect limit (`remainingMs`, when shorter) is that limit's ERR_TIMEOUT.
   */
  async #handshake(token: string | undefined, identity: string, remainingMs: number, signal: AbortSignal | undefined): Promise<void> {
    const where = this.#where;
    const limitMs = Math.min(remainingMs, CLIENT_HANDSHAKE_MS);
    const notAStore = (why: string) => protocolError(`${where} is not a wideep store: ${why}`);
    const onAbort = () => this.#fail(aborted(where));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const h = startHandshake();
      let answer: FrameReader;
      try {
        answer = await this.#request('handshake', Op.Hello, h.hello, limitMs);
      } catch (e) {
        if (isWideepError(e, 'ERR_TIMEOUT')) {
          if (limitMs < CLIENT_HANDSHAKE_MS) {
            throw new WideepError('ERR_TIMEOUT', `the store at ${where} did not complete the handshake within the connect limit`);
          }
          throw notAStore(`no answer to the store handshake within ${describeTimeout(limitMs)}`);
        }
        if (isWideepError(e, 'ERR_PEER')) throw notAStore('it closed the connection without answering the store handshake');
        if (isWideepError(e, 'ERR_PROTOCOL')) throw notAStore(e.message);
        throw e;
      }
      const proof = answerHello(answer, h, token, identity, where);
      await this.#request('authentication', Op.Auth, proof, limitMs).catch((e: WideepError) => {
        throw new WideepError(e.code, `the store at ${where} refused this client: ${e.message}`);
      });
      this.#decoder.setLimit(MAX_FRAME_BYTES);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  get #where(): string {
    return `${this.host}:${this.port}`;
  }

  async set(key: string, value: StoreValue): Promise<void> {
    await this.#request(`set of key ${describeKeys([key])}`, Op.Set, [{ bytes: keyBytes(key) }, { bytes: valueBytes('store value', value) }]);
  }

  async get(key: string, options?: { timeoutMs?: number }): Promise<Uint8Array> {
    const k = keyBytes(key);
    const timeoutMs = this.#callTimeout(options);
    const r = await this.#request(`get of key ${describeKeys([key])}`, Op.Get, [{ bytes: k }, { f64: timeoutMs }], timeoutMs + ANSWER_GRACE_MS);
    return new Uint8Array(r.bytes(MAX_VALUE_BYTES));
  }

  async wait(keys: readonly string[], options?: { timeoutMs?: number }): Promise<void> {
    if (!Array.isArray(keys)) throw new WideepError('ERR_INVALID_ARG', `store wait: expected an array of keys, got ${typeof keys}`);
    const fields: Field[] = [{ u32: keys.length }, ...keys.map((k) => ({ bytes: keyBytes(k) }))];
    const timeoutMs = this.#callTimeout(options);
    fields.push({ f64: timeoutMs });
    await this.#request(`wait for keys ${describeKeys(keys)}`, Op.Wait, fields, timeoutMs + ANSWER_GRACE_MS);
  }

  async add(key: string, delta: number): Promise<number> {
    const k = keyBytes(key);
    if (!Number.isSafeInteger(delta)) throw new WideepError('ERR_INVALID_ARG', `store add: delta must be a safe integer, got ${String(delta)}`);
    return (await this.#request(`add to key ${describeKeys([key])}`, Op.Add, [{ bytes: k }, { f64: delta }])).f64();
  }

  async compareSet(key: string, expected: StoreValue | null, desired: StoreValue): Promise<Uint8Array> {
    const fields: Field[] = [
      { bytes: keyBytes(key) },
      { u8: expected === null ? 0 : 1 },
      { bytes: expected === null ? new Uint8Array(0) : valueBytes('store compareSet expected', expected) },
      { bytes: valueBytes('store compareSet desired', desired) },
    ];
    const r = await this.#request(`compareSet of key ${describeKeys([key])}`, Op.CompareSet, fields);
    return new Uint8Array(r.bytes(MAX_VALUE_BYTES));
  }

  async delete(key: string): Promise<boolean> {
    return (await this.#request(`delete of key ${describeKeys([key])}`, Op.Delete, [{ bytes: keyBytes(key) }])).u8() === 1;
  }

  async barrier(name: string, options?: { timeoutMs?: number }): Promise<void> {
    const n = keyBytes(name);
    if (this.worldSize === undefined) {
      throw new WideepError('ERR_INVALID_ARG', 'store barrier: this client was connected without a worldSize');
    }
    const timeoutMs = this.#callTimeout(options);
    const generation = this.#generations.get(name) ?? 0;
    this.#generations.set(name, generation + 1);
    await this.#request(
      `barrier ${describeKeys([name])}`,
      Op.Barrier,
      [{ bytes: n }, { f64: generation }, { u32: this.worldSize }, { f64: timeoutMs }],
      timeoutMs + ANSWER_GRACE_MS,
    );
  }

  /**
   * Closes the connection, then any server this client hosts, once its other
   * clients have left or `drainMs` (default: the client's timeout) has passed.
   * Idempotent: later calls return the first call's promise.
   */
  close(options?: { drainMs?: number }): Promise<void> {
    this.#closing ??= this.#shutdown(options?.drainMs ?? this.timeoutMs);
    return this.#closing;
  }

  async #shutdown(drainMs: number): Promise<void> {
    this.#rejectAll(new WideepError('ERR_CLOSED', 'store client is closed'));
    if (!this.#socket.closed) {
      await new Promise<void>((resolve) => {
        this.#socket.once('close', () => resolve());
        this.#socket.destroy();
      });
    }
    await this.#server?.close({ drainMs });
  }

  #callTimeout(options: { timeoutMs?: number } | undefined): number {
    return options?.timeoutMs === undefined ? this.timeoutMs : checkTimeout('store timeoutMs', options.timeoutMs);
  }

  #request(what: string, op: number, fields: readonly Field[], answerMs: number = this.timeoutMs): Promise<FrameReader> {
    if (this.#closing) return Promise.reject(new WideepError('ERR_CLOSED', `store ${what}: the client is closed`));
    if (this.#broken) return Promise.reject(new WideepError(this.#broken.code, `store ${what}: ${this.#broken.message}`));
    const id = this.#nextId;
    this.#nextId = this.#nextId === 0xffffffff ? 1 : this.#nextId + 1;
    let frame: Buffer;
    try {
      frame = encodeFrame(op, id, fields);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<FrameReader>((resolve, reject) => {
      const timer = startTimer(
        answerMs,
        () => {
          this.#pending.delete(id);
          this.#updateRef();
          reject(new WideepError('ERR_TIMEOUT', `store server at ${this.#where} did not answer the ${what} within ${describeTimeout(answerMs)}`));
        },
        { unref: true },
      );
      this.#pending.set(id, { what, resolve, reject, timer });
      this.#updateRef();
      this.#socket.write(frame);
    });
  }

  #answer(frame: Buffer): void {
    const r = new FrameReader(frame);
    const status = r.u8();
    const id = r.u32();
    if (id === 0 && status !== Status.Ok) return this.#fail(decodeError(r));
    const p = this.#pending.get(id);
    if (!p) return; // its backstop timer already gave up on it
    this.#pending.delete(id);
    clearTimeout(p.timer);
    this.#updateRef();
    if (status === Status.Ok) p.resolve(r);
    else p.reject(decodeError(r));
  }

  #fail(e: WideepError): void {
    if (this.#broken || this.#closing) return;
    this.#broken = e;
    this.#rejectAll(e);
    this.#socket.destroy();
  }

  #rejectAll(e: WideepError): void {
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(new WideepError(e.code, `store ${p.what}: ${e.message}`));
    }
    this.#pending.clear();
    this.#updateRef();
  }

  #updateRef(): void {
    if (this.#pending.size > 0) this.#socket.ref();
    else this.#socket.unref();
  }
}
