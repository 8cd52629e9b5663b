/**
 * The store server: one map of keys to bytes, shared by every client that
 * connects. Requests that wait (get, wait, barrier) park in waiter lists and
 * are answered when a `set` completes them or their own timer fires; nothing
 * polls. The listener and its connections are unref'd, so a server never
 * keeps its process alive by itself.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

import { WideepError, assertInteger, isWideepError } from '../../errors.js';
import {
  FrameDecoder,
  FrameReader,
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  Op,
  PROTOCOL_MAGIC,
  Status,
  describeKeys,
  describeTimeout,
  encodeError,
  encodeFrame,
  protocolError,
  startTimer,
  type Field,
} from './protocol.js';

export interface StoreServerOptions {
  /** Address to bind; omit to listen on every interface. */
  host?: string;
  /** Port to bind; 0 picks a free one (see `port` afterwards). */
  port: number;
}

interface Connection {
  socket: Socket;
  decoder: FrameDecoder;
  /** Every parked request of this connection, dropped when it closes. */
  waiters: Set<Waiter>;
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
  #closing: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  private constructor(server: Server) {
    this.#server = server;
    server.on('connection', (socket) => this.#accept(socket));
  }

  /** Starts a server; EADDRINUSE becomes ERR_BUSY, other bind failures ERR_INVALID_ARG. */
  static async listen(options: StoreServerOptions): Promise<TcpStoreServer> {
    const port = assertInteger('store server port', options?.port, 0, 65535);
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
    return new TcpStoreServer(server);
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
    if (this.#closing) {
      socket.destroy();
      return;
    }
    socket.unref();
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    const conn: Connection = { socket, decoder: new FrameDecoder(), waiters: new Set() };
    this.#conns.add(conn);
    socket.on('data', (chunk: Buffer) => {
      let frames: Buffer[];
      try {
        frames = conn.decoder.push(chunk);
      } catch {
        this.#drop(conn);
        return;
      }
      for (const frame of frames) {
        if (socket.destroyed) return;
        this.#handle(conn, frame);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => this.#drop(conn));
  }

  #drop(conn: Connection): void {
    if (!this.#conns.delete(conn)) return;
    for (const w of conn.waiters) {
      clearTimeout(w.timer);
      w.detach();
    }
    conn.waiters.clear();
    conn.socket.destroy();
    if (this.#conns.size === 0) this.#drained?.();
  }

  #send(conn: Connection, frame: Buffer): void {
    if (!conn.socket.destroyed) conn.socket.write(frame);
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
      this.#dispatch(conn, op, id, r);
    } catch (e) {
      if (isWideepError(e) && e.code !== 'ERR_PROTOCOL') {
        this.#send(conn, encodeError(id, e));
      } else {
        // A peer that does not speak the protocol gets one answer, then the door.
        this.#send(conn, encodeError(id, isWideepError(e) ? e : protocolError(String(e))));
        conn.socket.end();
        this.#drop(conn);
      }
    }
  }

  #dispatch(conn: Connection, op: number, id: number, r: FrameReader): void {
    switch (op) {
      case Op.Hello: {
        const magic = r.u32();
        r.end();
        if (magic !== PROTOCOL_MAGIC) throw protocolError(`unknown protocol magic 0x${magic.toString(16)}`);
        return this.#ok(conn, id);
      }
      case Op.Set: {
        const key = r.string(MAX_KEY_BYTES);
        const value = r.bytes(MAX_VALUE_BYTES);
        r.end();
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
        const current = this.#values.get(key);
        const matches = current === undefined ? !hasExpected : hasExpected && Buffer.from(current).equals(expected);
        if (matches) this.#set(key, new Uint8Array(desired));
        // "The value after the operation": empty when the key still does not exist.
        return this.#ok(conn, id, [{ bytes: this.#values.get(key) ?? new Uint8Array(0) }]);
      }
      case Op.Delete: {
        const key = r.string(MAX_KEY_BYTES);
        r.end();
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
      if (w.missing.size === 0) this.#finish(w, w.op === Op.Get ? [{ bytes: value }] : []);
    }
  }

  #finish(w: Waiter, fields: readonly Field[]): void {
    clearTimeout(w.timer);
    w.conn.waiters.delete(w);
    this.#ok(w.conn, w.id, fields);
  }

  #park(conn: Connection, id: number, op: typeof Op.Get | typeof Op.Wait, keys: string[], timeoutMs: number): void {
    const missing = new Set(keys.filter((k) => !this.#values.has(k)));
    if (missing.size === 0) {
      return this.#ok(conn, id, op === Op.Get ? [{ bytes: this.#values.get(keys[0]!)! }] : []);
    }
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
      for (const a of barrier.arrived) this.#finish(a, []);
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
