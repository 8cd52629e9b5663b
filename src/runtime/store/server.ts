/**
 * The store server: one map of keys to bytes, shared by every client that
 * connects. Requests that wait (get, wait, barrier) park in waiter lists and
 * are answered when a `set` completes them or their own timer fires; nothing
 * polls. The listener and its connections are unref'd, so a server never
 * keeps its process alive by itself.
 *
 * A connection is served only after its handshake (handshake.ts): with a
 * token, only a client that proves it holds the same one. Every resource a
 * peer can make the server hold is bounded (StoreServerLimits).
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

import { WideepError, assertInteger, isWideepError } from '../../errors.js';
import { checkToken } from './auth.js';
import { SERVER_HANDSHAKE_MS, readAuth, readHello, type ServerHandshake } from './handshake.js';
import { leftKey, writeRefusal } from './identity.js';
import {
  FrameDecoder,
  FrameReader,
  MAX_FRAME_BYTES,
  MAX_HANDSHAKE_FRAME_BYTES,
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  Op,
  Status,
  describeKeys,
  describeTimeout,
  encodeError,
  encodeFrame,
  encodeValueAnswer,
  protocolError,
  startTimer,
  type Field,
} from './protocol.js';

/** What one peer can make the server hold. */
export interface StoreServerLimits {
  /** Time a new connection has to complete its handshake (ms). */
  handshakeMs: number;
  /** Connections in their handshake at once; more are turned away with ERR_BUSY (the client retries). */
  maxHandshaking: number;
  /**
   * Unsent reply bytes of one connection above which the server stops reading
   * its requests until it reads its replies.
   */
  maxQueuedReplyBytes: number;
  /** How long a connection may stay above maxQueuedReplyBytes before it is disconnected (ms). */
  replyStallMs: number;
  /** Requests one connection may have parked (get, wait, barrier) at once; more get ERR_BUSY. */
  maxParkedPerConnection: number;
}

export const DEFAULT_STORE_LIMITS: Readonly<StoreServerLimits> = {
  handshakeMs: SERVER_HANDSHAKE_MS,
  maxHandshaking: 64,
  maxQueuedReplyBytes: 64 * 2 ** 20,
  replyStallMs: 30_000,
  maxParkedPerConnection: 65_536,
};

export interface StoreServerOptions {
  /** Address to bind (a name binds the first address it resolves to); omit to listen on every interface. */
  host?: string;
  /** Port to bind; 0 picks a free one (see `port` afterwards). */
  port: number;
  /** The job's secret: only clients that prove they hold it are served. Omit for an open store. */
  token?: string;
  limits?: Partial<StoreServerLimits>;
}

interface Connection {
  socket: Socket;
  decoder: FrameDecoder;
  /** Every parked request of this connection, dropped when it closes. */
  waiters: Set<Waiter>;
  /** Where the handshake stands; requests are served only once 'ready'. */
  stage: 'hello' | 'auth' | 'ready';
  handshake: ServerHandshake | undefined;
  handshakeTimer: NodeJS.Timeout | undefined;
  /** The identity it registered ('' for none). */
  identity: string;
  /** Set while its replies are backed up: its requests wait, and this timer disconnects it. */
  stallTimer: NodeJS.Timeout | undefined;
}

interface Waiter {
  conn: Connection;
  id: number;
  timer: NodeJS.Timeout | undefined;
  /** Removes the waiter from the server's indexes (not from conn.waiters). */
  detach(): void;
}

interface KeyWaiter extends Waiter {
  op: typeof Op.Get | typeof Op.Wait;
  keys: readonly string[];
  missing: Set<string>;
}

interface Barrier {
  name: string;
  generation: number;
  worldSize: number;
  arrived: Set<Waiter>;
}

const INTEGER = /^-?\d+$/;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

export class TcpStoreServer {
  readonly #server: Server;
  readonly #values = new Map<string, Uint8Array>();
  readonly #keyWaiters = new Map<string, Set<KeyWaiter>>();
  readonly #barriers = new Map<string, Barrier>();
  readonly #conns = new Set<Connection>();
  /** Which connection holds each registered identity. */
  readonly #identities = new Map<string, Connection>();
  readonly #token: string | undefined;
  readonly #limits: StoreServerLimits;
  #closing: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  private constructor(server: Server, token: string | undefined, limits: StoreServerLimits) {
    this.#server = server;
    this.#token = token;
    this.#limits = limits;
    server.on('connection', (socket) => this.#accept(socket));
  }

  /** Starts a server; EADDRINUSE becomes ERR_BUSY, other bind failures ERR_INVALID_ARG. */
  static async listen(options: StoreServerOptions): Promise<TcpStoreServer> {
    const port = assertInteger('store server port', options?.port, 0, 65535);
    const token = checkToken('store server token', options.token);
    const limits = { ...DEFAULT_STORE_LIMITS, ...options.limits };
    for (const [name, v] of Object.entries(limits)) assertInteger(`store server limits.${name}`, v, 1);
    const host = options.host;
    const server = createServer({ noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((e: NodeJS.ErrnoException) => {
      const where = `${host ?? '*'}:${port}`;
      if (e.code === 'EADDRINUSE') {
        throw new WideepError('ERR_BUSY', `store server: ${where} is already in use; choose another port (MASTER_PORT)`, { cause: e });
      }
      throw new WideepError('ERR_INVALID_ARG', `store server: cannot listen on ${where}: ${e.message}`, { cause: e });
    });
    server.unref();
    return new TcpStoreServer(server, token, limits);
  }

  /** The bound port (the chosen one when listening on port 0). */
  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** The bound address, e.g. '127.0.0.1' or '::'. */
  get address(): string {
    return (this.#server.address() as AddressInfo).address;
  }

  /** Number of connected clients. */
  get connections(): number {
    return this.#conns.size;
  }

  /** Requests parked on the server (get, wait, barrier) that are still waiting. */
  get parked(): number {
    let n = 0;
    for (const c of this.#conns) n += c.waiters.size;
    return n;
  }

  /**
   * Stops the server: no new connections, then (after up to `drainMs` for the
   * connected clients to leave on their own) drops every connection and
   * parked request. Idempotent.
   */
  close(options?: { drainMs?: number }): Promise<void> {
    this.#closing ??= this.#shutdown(options?.drainMs ?? 0);
    return this.#closing;
  }

  async #shutdown(drainMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    if (drainMs > 0 && this.#conns.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = startTimer(drainMs, resolve);
        this.#drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const conn of [...this.#conns]) this.#drop(conn);
    this.#values.clear();
    await closed;
  }

  #accept(socket: Socket): void {
    socket.unref();
    socket.on('error', () => {});
    const handshaking = [...this.#conns].filter((c) => c.stage !== 'ready').length;
    const refusal = this.#closing
      ? new WideepError('ERR_CLOSED', 'the store is shutting down')
      : handshaking >= this.#limits.maxHandshaking
        ? new WideepError('ERR_BUSY', `the store has ${handshaking} connections in their handshake already; try again`)
        : undefined;
    if (refusal) {
      // Id 0 answers no request: it speaks for the whole connection.
      socket.end(encodeError(0, refusal));
      setTimeout(() => socket.destroy(), 1_000).unref();
      return;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    const conn: Connection = {
      socket,
      decoder: new FrameDecoder(MAX_HANDSHAKE_FRAME_BYTES),
      waiters: new Set(),
      stage: 'hello',
      handshake: undefined,
      handshakeTimer: setTimeout(() => this.#drop(conn), this.#limits.handshakeMs).unref(),
      identity: '',
      stallTimer: undefined,
    };
    this.#conns.add(conn);
    socket.on('data', (chunk: Buffer) => {
      conn.decoder.push(chunk);
      this.#serve(conn);
    });
    socket.on('close', () => this.#drop(conn));
  }

  /** Handles the connection's buffered requests, until none is left or its replies back up. */
  #serve(conn: Connection): void {
    while (this.#conns.has(conn) && conn.stallTimer === undefined) {
      let frame: Buffer | undefined;
      try {
        frame = conn.decoder.next();
      } catch {
        return this.#drop(conn);
      }
      if (!frame) return;
      this.#handle(conn, frame);
    }
  }

  /**
   * Releases everything the connection holds. `answered`: the peer has just
   * been sent why, so the socket ends gracefully instead of at once.
   */
  #drop(conn: Connection, answered = false): void {
    if (!this.#conns.delete(conn)) return;
    clearTimeout(conn.handshakeTimer);
    clearTimeout(conn.stallTimer);
    for (const w of conn.waiters) {
      clearTimeout(w.timer);
      w.detach();
    }
    conn.waiters.clear();
    if (answered) {
      conn.socket.end();
      setTimeout(() => conn.socket.destroy(), 1_000).unref();
    } else {
      conn.socket.destroy();
    }
    if (conn.identity && this.#identities.get(conn.identity) === conn) {
      this.#identities.delete(conn.identity);
      if (!this.#closing) this.#set(leftKey(conn.identity), new Uint8Array(0));
    }
    if (this.#conns.size === 0) this.#drained?.();
  }

  #send(conn: Connection, ...chunks: Buffer[]): void {
    const socket = conn.socket;
    if (socket.destroyed || !this.#conns.has(conn)) return;
    socket.cork();
    for (const c of chunks) socket.write(c);
    socket.uncork();
    if (socket.writableLength > this.#limits.maxQueuedReplyBytes && conn.stallTimer === undefined) this.#hold(conn);
  }

  /**
   * The peer is not reading its replies: read no more of its requests until it
   * has caught up, and disconnect it if it has not within replyStallMs.
   */
  #hold(conn: Connection): void {
    conn.socket.pause();
    conn.stallTimer = setTimeout(() => this.#drop(conn), this.#limits.replyStallMs).unref();
    conn.socket.once('drain', () => {
      clearTimeout(conn.stallTimer);
      conn.stallTimer = undefined;
      conn.socket.resume();
      this.#serve(conn);
    });
  }

  #ok(conn: Connection, id: number, fields: readonly Field[] = []): void {
    this.#send(conn, encodeFrame(Status.Ok, id, fields));
  }

  #handle(conn: Connection, frame: Buffer): void {
    const r = new FrameReader(frame);
    let id = 0;
    try {
      const op = r.u8();
      id = r.u32();
      if (conn.stage === 'ready') this.#dispatch(conn, op, id, r);
      else this.#handshake(conn, op, id, r);
    } catch (e) {
      const error = isWideepError(e) ? e : protocolError(String(e));
      this.#send(conn, encodeError(id, error));
      // A peer that does not speak the protocol, or fails its handshake, gets one answer, then the door.
      if (error.code === 'ERR_PROTOCOL' || conn.stage !== 'ready') this.#drop(conn, true);
    }
  }

  #handshake(conn: Connection, op: number, id: number, r: FrameReader): void {
    if (conn.stage === 'hello' && op === Op.Hello) {
      const { state, answer } = readHello(r, this.#token);
      conn.handshake = state;
      conn.stage = 'auth';
      return this.#ok(conn, id, answer);
    }
    if (conn.stage === 'auth' && op === Op.Auth) {
      const identity = readAuth(r, this.#token, conn.handshake!);
      if (identity) {
        if (this.#identities.has(identity)) {
          const why = 'two processes given one rank, or one node rank?';
          throw new WideepError('ERR_INVALID_ARG', `${identity} is already connected to this store (${why})`);
        }
        this.#identities.set(identity, conn);
        conn.identity = identity;
        this.#values.delete(leftKey(identity));
      }
      conn.stage = 'ready';
      clearTimeout(conn.handshakeTimer);
      conn.decoder.setLimit(MAX_FRAME_BYTES);
      return this.#ok(conn, id);
    }
    throw protocolError(`operation ${op} before the handshake completed`);
  }

  /** Refuses a write to a key this connection does not own (identity.ts). */
  #checkWrite(conn: Connection, what: string, key: string): void {
    const refusal = writeRefusal(key, conn.identity || undefined);
    if (refusal) throw new WideepError('ERR_INVALID_ARG', `store ${what}: ${refusal}`);
  }

  /** Refuses to park one more request of a connection at its limit. */
  #checkParked(conn: Connection): void {
    if (conn.waiters.size >= this.#limits.maxParkedPerConnection) {
      throw new WideepError('ERR_BUSY', `store: this connection already has ${conn.waiters.size} requests waiting, the limit`);
    }
  }

  #dispatch(conn: Connection, op: number, id: number, r: FrameReader): void {
    switch (op) {
      case Op.Set: {
        const key = r.string(MAX_KEY_BYTES);
        const value = r.bytes(MAX_VALUE_BYTES);
        r.end();
        this.#checkWrite(conn, 'set', key);
        this.#set(key, new Uint8Array(value));
        return this.#ok(conn, id);
      }
      case Op.Get:
      case Op.Wait: {
        const keys: string[] = [];
        const n = op === Op.Get ? 1 : r.u32();
        for (let i = 0; i < n; i++) keys.push(r.string(MAX_KEY_BYTES));
        const timeoutMs = r.f64();
        r.end();
        return this.#park(conn, id, op, keys, timeoutMs);
      }
      case Op.Add: {
        const key = r.string(MAX_KEY_BYTES);
        const delta = r.f64();
        r.end();
        this.#checkWrite(conn, 'add', key);
        const old = this.#values.get(key);
        const text = old === undefined ? '0' : decoder.decode(old);
        if (!INTEGER.test(text)) {
          throw new WideepError('ERR_INVALID_ARG', `store add: the value of key ${JSON.stringify(key)} is not an integer`);
        }
        const next = Number(text) + delta;
        if (!Number.isSafeInteger(next)) {
          throw new WideepError('ERR_INVALID_ARG', `store add: key ${JSON.stringify(key)} would become ${next}, beyond a safe integer`);
        }
        this.#set(key, encoder.encode(String(next)));
        return this.#ok(conn, id, [{ f64: next }]);
      }
      case Op.CompareSet: {
        const key = r.string(MAX_KEY_BYTES);
        const hasExpected = r.u8() === 1;
        const expected = r.bytes(MAX_VALUE_BYTES);
        const desired = r.bytes(MAX_VALUE_BYTES);
        r.end();
        this.#checkWrite(conn, 'compareSet', key);
        const current = this.#values.get(key);
        const matches = current === undefined ? !hasExpected : hasExpected && Buffer.from(current).equals(expected);
        if (matches) this.#set(key, new Uint8Array(desired));
        // "The value after the operation": empty when the key still does not exist.
        return this.#ok(conn, id, [{ bytes: this.#values.get(key) ?? new Uint8Array(0) }]);
      }
      case Op.Delete: {
        const key = r.string(MAX_KEY_BYTES);
        r.end();
        this.#checkWrite(conn, 'delete', key);
        return this.#ok(conn, id, [{ u8: this.#values.delete(key) ? 1 : 0 }]);
      }
      case Op.Barrier: {
        const name = r.string(MAX_KEY_BYTES);
        const generation = r.f64();
        const worldSize = r.u32();
        const timeoutMs = r.f64();
        r.end();
        return this.#arrive(conn, id, name, generation, worldSize, timeoutMs);
      }
      default:
        throw protocolError(`unknown operation ${op}`);
    }
  }

  #set(key: string, value: Uint8Array): void {
    this.#values.set(key, value);
    const waiters = this.#keyWaiters.get(key);
    if (!waiters) return;
    this.#keyWaiters.delete(key);
    for (const w of waiters) {
      w.missing.delete(key);
      if (w.missing.size === 0) this.#finish(w, w.op === Op.Get ? value : undefined);
    }
  }

  /** Answers a parked request: with `value` for a get, empty otherwise. */
  #finish(w: Waiter, value?: Uint8Array): void {
    clearTimeout(w.timer);
    w.conn.waiters.delete(w);
    this.#answer(w.conn, w.id, value);
  }

  #answer(conn: Connection, id: number, value: Uint8Array | undefined): void {
    if (value === undefined) this.#ok(conn, id);
    else this.#send(conn, ...encodeValueAnswer(id, value));
  }

  #park(conn: Connection, id: number, op: typeof Op.Get | typeof Op.Wait, keys: string[], timeoutMs: number): void {
    const missing = new Set(keys.filter((k) => !this.#values.has(k)));
    if (missing.size === 0) return this.#answer(conn, id, op === Op.Get ? this.#values.get(keys[0]!)! : undefined);
    this.#checkParked(conn);
    const w: KeyWaiter = {
      conn,
      id,
      op,
      keys,
      missing,
      timer: undefined,
      detach: () => {
        for (const k of w.missing) {
          const set = this.#keyWaiters.get(k);
          set?.delete(w);
          if (set?.size === 0) this.#keyWaiters.delete(k);
        }
      },
    };
    for (const k of missing) {
      let set = this.#keyWaiters.get(k);
      if (!set) this.#keyWaiters.set(k, (set = new Set()));
      set.add(w);
    }
    conn.waiters.add(w);
    this.#arm(w, timeoutMs, () => {
      const still = keys.filter((k) => w.missing.has(k));
      return op === Op.Get
        ? `store get timed out after ${describeTimeout(timeoutMs)} waiting for key ${describeKeys(still)}`
        : `store wait timed out after ${describeTimeout(timeoutMs)}; keys still missing: ${describeKeys(still)}`;
    });
  }

  /** Starts the waiter's timer (none for an infinite timeout). */
  #arm(w: Waiter, timeoutMs: number, message: () => string): void {
    w.timer = startTimer(
      timeoutMs,
      () => {
        const text = message();
        w.detach();
        w.conn.waiters.delete(w);
        this.#send(w.conn, encodeError(w.id, new WideepError('ERR_TIMEOUT', text)));
      },
      { unref: true },
    );
  }

  #arrive(conn: Connection, id: number, name: string, generation: number, worldSize: number, timeoutMs: number): void {
    if (worldSize < 1) throw new WideepError('ERR_INVALID_ARG', `store barrier ${JSON.stringify(name)}: world size must be >= 1`);
    this.#checkParked(conn);
    const slot = `${name}\u0000${generation}`;
    let b = this.#barriers.get(slot);
    if (!b) this.#barriers.set(slot, (b = { name, generation, worldSize, arrived: new Set() }));
    if (b.worldSize !== worldSize) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `store barrier ${JSON.stringify(name)}: world size ${worldSize} differs from the ${b.worldSize} of the ranks already waiting`,
      );
    }
    const barrier = b;
    const w: Waiter = {
      conn,
      id,
      timer: undefined,
      detach: () => {
        barrier.arrived.delete(w);
        if (barrier.arrived.size === 0 && this.#barriers.get(slot) === barrier) this.#barriers.delete(slot);
      },
    };
    barrier.arrived.add(w);
    conn.waiters.add(w);
    if (barrier.arrived.size === worldSize) {
      this.#barriers.delete(slot);
      for (const a of barrier.arrived) this.#finish(a);
      return;
    }
    this.#arm(
      w,
      timeoutMs,
      () =>
        `store barrier ${JSON.stringify(name)} (generation ${generation}) timed out after ${describeTimeout(timeoutMs)}: ` +
        `${barrier.arrived.size} of ${worldSize} ranks arrived`,
    );
  }
}
