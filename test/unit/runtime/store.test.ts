import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, connect as netConnect, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import {
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  TcpStoreClient,
  TcpStoreServer,
  openStore,
} from '../../../src/runtime/store/index.js';
import { WideepError } from '../../../src/errors.js';

const HOST = '127.0.0.1';
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function startServer(port = 0): Promise<TcpStoreServer> {
  const s = await TcpStoreServer.listen({ host: HOST, port });
  cleanups.push(() => s.close());
  return s;
}

async function connect(server: TcpStoreServer | number, options: { worldSize?: number; timeoutMs?: number } = {}) {
  const port = typeof server === 'number' ? server : server.port;
  const c = await TcpStoreClient.connect({ host: HOST, port, worldSize: 4, timeoutMs: 10_000, ...options });
  cleanups.push(() => c.close({ drainMs: 0 }));
  return c;
}

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<WideepError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(WideepError);
    return e as WideepError;
  }
  throw new Error('expected the promise to reject');
}

/** A port that nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, HOST, r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** Whether `p` is still pending after the server has answered a later request of `c`. */
async function stillPending(p: Promise<unknown>, c: TcpStoreClient): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await c.delete('__roundtrip__');
  return !settled;
}

describe('TcpStore: values', () => {
  it('sets and gets binary and string values, including 10 MiB, returning copies', async () => {
    const server = await startServer();
    const a = await connect(server);
    const b = await connect(server);
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    await a.set('bytes', all);
    await a.set('text', 'grüße ✓');
    await a.set('empty', new Uint8Array(0));
    const big = new Uint8Array(10 * 2 ** 20);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff;
    big[big.length - 1] = 0xab;
    await a.set('big', big);

    expect(Array.from(await b.get('bytes'))).toEqual(Array.from(all));
    expect(text(await b.get('text'))).toBe('grüße ✓');
    expect((await b.get('empty')).length).toBe(0);
    const got = await b.get('big');
    expect(got).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(got).equals(Buffer.from(big))).toBe(true);

    got[0] = 0xff;
    expect((await b.get('big'))[0]).toBe(0);
    await a.set('text', 'overwritten');
    expect(text(await b.get('text'))).toBe('overwritten');
  });

  it('get waits for a key that another client sets later', async () => {
    const server = await startServer();
    const a = await connect(server);
    const b = await connect(server);
    const pending = a.get('later');
    expect(await stillPending(pending, a)).toBe(true);
    expect(server.parked).toBe(1);
    await b.set('later', 'now');
    expect(text(await pending)).toBe('now');
    expect(server.parked).toBe(0);
  });

  it('wait resolves only once every key exists', async () => {
    const server = await startServer();
    const a = await connect(server);
    const b = await connect(server);
    await b.set('k1', '1');
    const pending = a.wait(['k1', 'k2', 'k3']);
    await b.set('k2', '2');
    expect(await stillPending(pending, a)).toBe(true);
    await b.set('k3', '3');
    await expect(pending).resolves.toBeUndefined();
    await expect(a.wait([])).resolves.toBeUndefined();
  });

  it('add is atomic across many concurrent clients', async () => {
    const server = await startServer();
    const clients = await Promise.all(Array.from({ length: 8 }, () => connect(server)));
    const results = await Promise.all(clients.flatMap((c) => Array.from({ length: 25 }, () => c.add('counter', 1))));
    expect(new Set(results).size).toBe(200);
    expect(Math.max(...results)).toBe(200);
    expect(text(await clients[0]!.get('counter'))).toBe('200');
    expect(await clients[1]!.add('counter', -50)).toBe(150);
    expect(await clients[1]!.add('fresh', 7)).toBe(7);
    await clients[2]!.set('notanumber', 'abc');
    const e = await rejection(clients[2]!.add('notanumber', 1));
    expect(e.code).toBe('ERR_INVALID_ARG');
    expect(e.message).toContain('not an integer');
    expect((await rejection(clients[2]!.add('counter', 0.5))).code).toBe('ERR_INVALID_ARG');
  });

  it('compareSet sets only on a match and returns the value after the operation', async () => {
    const server = await startServer();
    const a = await connect(server);
    const b = await connect(server);
    const waiter = b.get('cas');
    expect(text(await a.compareSet('cas', null, 'first'))).toBe('first');
    expect(text(await waiter)).toBe('first');
    expect(text(await a.compareSet('cas', null, 'second'))).toBe('first');
    expect(text(await a.compareSet('cas', 'wrong', 'third'))).toBe('first');
    expect(text(await b.compareSet('cas', 'first', new TextEncoder().encode('fourth')))).toBe('fourth');
    expect(text(await a.get('cas'))).toBe('fourth');
    // Expecting a value of a missing key: nothing happens, the key stays missing.
    expect((await a.compareSet('nokey', 'x', 'y')).length).toBe(0);
    expect((await rejection(a.get('nokey', { timeoutMs: 50 }))).code).toBe('ERR_TIMEOUT');
  });

  it('delete reports whether the key existed', async () => {
    const server = await startServer();
    const a = await connect(server);
    await a.set('gone', 'soon');
    expect(await a.delete('gone')).toBe(true);
    expect(await a.delete('gone')).toBe(false);
    expect((await rejection(a.get('gone', { timeoutMs: 50 }))).code).toBe('ERR_TIMEOUT');
  });
});

describe('TcpStore: barrier', () => {
  it('holds 4 clients together over several generations of one name', async () => {
    const server = await startServer();
    const clients = await Promise.all(Array.from({ length: 4 }, () => connect(server, { worldSize: 4 })));
    const generations = 5;
    const arrived = new Array<number>(generations).fill(0);
    const seenAfter: number[][] = clients.map(() => []);
    await Promise.all(
      clients.map(async (c, i) => {
        for (let g = 0; g < generations; g++) {
          await new Promise((r) => setTimeout(r, ((i * 7 + g * 3) % 5) * 4));
          arrived[g]!++;
          await c.barrier('loop');
          seenAfter[i]!.push(arrived[g]!);
        }
      }),
    );
    // Nobody left generation g before all 4 had arrived at it.
    for (const seen of seenAfter) expect(seen).toEqual(new Array(generations).fill(4));
    expect(server.parked).toBe(0);
  });

  it('times out naming the barrier and how many arrived', async () => {
    const server = await startServer();
    const clients = await Promise.all(Array.from({ length: 3 }, () => connect(server, { worldSize: 4 })));
    const errors = await Promise.all(clients.map((c) => rejection(c.barrier('short', { timeoutMs: 200 }))));
    for (const e of errors) {
      expect(e.code).toBe('ERR_TIMEOUT');
      expect(e.message).toMatch(/barrier "short".*200 ms/);
    }
    expect(errors.map((e) => e.message).join()).toContain('3 of 4');
  });

  it('refuses a barrier without a worldSize and a worldSize that disagrees', async () => {
    const server = await startServer();
    const none = await TcpStoreClient.connect({ host: HOST, port: server.port, timeoutMs: 5_000 });
    cleanups.push(() => none.close());
    expect((await rejection(none.barrier('x'))).message).toContain('without a worldSize');
    const four = await connect(server, { worldSize: 4 });
    const two = await connect(server, { worldSize: 2 });
    const waiting = rejection(four.barrier('mixed', { timeoutMs: 300 }));
    await vi.waitFor(() => expect(server.parked).toBe(1));
    const e = await rejection(two.barrier('mixed'));
    expect(e.code).toBe('ERR_INVALID_ARG');
    expect(e.message).toContain('world size 2 differs');
    expect((await waiting).code).toBe('ERR_TIMEOUT');
  });
});

describe('TcpStore: timeouts and limits', () => {
  it('get and wait time out naming the missing keys and the limit', async () => {
    const server = await startServer();
    const a = await connect(server);
    await a.set('present', 'yes');
    const g = await rejection(a.get('missing-key', { timeoutMs: 150 }));
    expect(g.code).toBe('ERR_TIMEOUT');
    expect(g.message).toContain('"missing-key"');
    expect(g.message).toContain('150 ms');
    const w = await rejection(a.wait(['present', 'm1', 'm2'], { timeoutMs: 100 }));
    expect(w.code).toBe('ERR_TIMEOUT');
    expect(w.message).toContain('"m1", "m2"');
    expect(w.message).not.toContain('present');
    // The client's own default applies when the call gives none.
    const short = await connect(server, { timeoutMs: 120 });
    const d = await rejection(short.get('other'));
    expect(d.message).toContain('120 ms');
    expect(server.parked).toBe(0);
  });

  it('refuses oversize keys and values with ERR_INVALID_ARG naming the limit, and stays usable', async () => {
    const server = await startServer();
    const a = await connect(server);
    const longKey = 'k'.repeat(MAX_KEY_BYTES + 1);
    const k = await rejection(a.set(longKey, 'v'));
    expect(k.code).toBe('ERR_INVALID_ARG');
    expect(k.message).toContain(`limit of ${MAX_KEY_BYTES} bytes`);
    expect((await rejection(a.get(longKey))).code).toBe('ERR_INVALID_ARG');
    const v = await rejection(a.set('big', new Uint8Array(MAX_VALUE_BYTES + 1)));
    expect(v.code).toBe('ERR_INVALID_ARG');
    expect(v.message).toContain(`${MAX_VALUE_BYTES} bytes`);
    expect((await rejection(a.set('', 'v'))).code).toBe('ERR_INVALID_ARG');
    expect((await rejection(a.get('k', { timeoutMs: -1 }))).code).toBe('ERR_INVALID_ARG');
    await a.set('k'.repeat(MAX_KEY_BYTES), 'ok');
    expect(text(await a.get('k'.repeat(MAX_KEY_BYTES)))).toBe('ok');
  });

  it('the server drops a peer that announces an oversize frame or speaks another protocol', async () => {
    const server = await startServer();
    for (const bytes of [Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]), Buffer.from([0, 0, 0, 5, 99, 0, 0, 0, 1])]) {
      const s = netConnect({ host: HOST, port: server.port });
      await new Promise<void>((r) => s.once('connect', () => r()));
      s.on('error', () => {});
      s.resume(); // read (and drop) the server's answer, so that its end is seen
      s.write(bytes);
      await new Promise<void>((r) => s.once('close', () => r()));
    }
    await vi.waitFor(() => expect(server.connections).toBe(0));
  });

  it('a client refuses a peer that is not a store', async () => {
    const http = createServer((s) => {
      s.on('error', () => {});
      s.resume();
      s.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    await new Promise<void>((r) => http.listen(0, HOST, r));
    cleanups.push(() => new Promise((r) => http.close(r)));
    const e = await rejection(TcpStoreClient.connect({ host: HOST, port: (http.address() as AddressInfo).port, timeoutMs: 2_000 }));
    expect(e.code).toBe('ERR_PROTOCOL');
    expect(e.message).toContain('is not a wideep store');
  });
});

describe('TcpStore: connections', () => {
  it('a client may start before the server and retries until it is up', async () => {
    const port = await freePort();
    const started = Date.now();
    const connecting = TcpStoreClient.connect({ host: HOST, port, worldSize: 1, timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 300));
    const server = await startServer(port);
    const c = await connecting;
    cleanups.push(() => c.close());
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    await c.set('k', 'v');
    expect(text(await c.get('k'))).toBe('v');
    expect(server.connections).toBe(1);
  });

  it('gives up connecting with ERR_TIMEOUT naming the address', async () => {
    const port = await freePort();
    const e = await rejection(TcpStoreClient.connect({ host: HOST, port, timeoutMs: 300 }));
    expect(e.code).toBe('ERR_TIMEOUT');
    expect(e.message).toContain(`${HOST}:${port}`);
  });

  it('server shutdown rejects pending and later calls with ERR_PEER promptly', async () => {
    const server = await startServer();
    const a = await connect(server);
    const pending = [a.get('never'), a.wait(['never', 'ever']), a.barrier('never')];
    expect(await stillPending(pending[0]!, a)).toBe(true);
    const t0 = Date.now();
    await server.close();
    const errors = await Promise.all(pending.map(rejection));
    expect(Date.now() - t0).toBeLessThan(1_000);
    for (const e of errors) {
      expect(e.code).toBe('ERR_PEER');
      expect(e.message).toContain('closed the connection');
    }
    expect(errors[0]!.message).toContain('"never"');
    expect((await rejection(a.set('k', 'v'))).code).toBe('ERR_PEER');
  });

  it('close is idempotent; calls after it (and pending at it) reject with ERR_CLOSED', async () => {
    const server = await startServer();
    const a = await connect(server);
    const pending = rejection(a.get('never'));
    const first = a.close();
    expect(a.close()).toBe(first);
    await first;
    expect((await pending).code).toBe('ERR_CLOSED');
    expect((await rejection(a.get('k'))).code).toBe('ERR_CLOSED');
    // The server let go of the closed connection's waiter.
    await vi.waitFor(() => expect(server.connections).toBe(0));
    expect(server.parked).toBe(0);
    await server.close();
    await server.close();
  });

  it('openStore: the master hosts the server and closes it after the other clients leave', async () => {
    const master = await openStore({ host: HOST, port: 0, worldSize: 2, isMaster: true, timeoutMs: 10_000 });
    cleanups.push(() => master.close());
    const other = await connect(master.port, { worldSize: 2 });
    await Promise.all([master.barrier('meet'), other.barrier('meet')]);
    let masterClosed = false;
    const closing = master.close().then(() => (masterClosed = true));
    await other.set('still', 'served');
    expect(text(await other.get('still'))).toBe('served');
    expect(masterClosed).toBe(false);
    await other.close();
    await closing;
    expect(masterClosed).toBe(true);
    expect((await rejection(TcpStoreClient.connect({ host: HOST, port: master.port, timeoutMs: 200 }))).code).toBe('ERR_TIMEOUT');
  });

  it('refuses a port in use with ERR_BUSY', async () => {
    const server = await startServer();
    const e = await rejection(TcpStoreServer.listen({ host: HOST, port: server.port }));
    expect(e.code).toBe('ERR_BUSY');
    expect(e.message).toContain(String(server.port));
  });
});

describe('TcpStore: process lifetime', () => {
  const fixture = fileURLToPath(new URL('../../fixtures/runtime/store-exit.mjs', import.meta.url));
  beforeAll(() => {
    if (!existsSync(new URL('../../../dist/runtime/store/index.js', import.meta.url))) {
      throw new Error('dist/ is missing: run `npx tsc -p tsconfig.build.json` first (npm test does)');
    }
  });

  it.each(['closed', 'idle', 'hosted'])('a process whose store is %s exits by itself', async (mode) => {
    const child = spawn(process.execPath, [fixture, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const [code, signal] = await new Promise<[number | null, string | null]>((r) => child.once('close', (c, s) => r([c, s])));
    clearTimeout(timer);
    expect(signal).toBeNull();
    expect(code).toBe(0);
    expect(out).toContain(`done ${mode}`);
  });
});
