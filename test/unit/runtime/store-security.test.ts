/**
 * The store against peers that are not well-behaved clients of the job:
 * no token, a wrong one, a replayed proof, oversize frames, a client that
 * never reads, forged claims of another connection's identity. Real sockets
 * on loopback; the raw peer speaks the wire format by hand.
 */
import { createServer, connect as netConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';

import { afterEach, describe, expect, it, vi } from 'vitest';

import { clientProof, newNonce } from '../../../src/runtime/store/auth.js';
import { TcpStoreClient, TcpStoreServer, openStore, type StoreServerOptions } from '../../../src/runtime/store/index.js';
import { FrameDecoder, FrameReader, MAX_FRAME_BYTES, Op, PROTOCOL_MAGIC, PROTOCOL_VERSION, encodeFrame } from '../../../src/runtime/store/protocol.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const HOST = '127.0.0.1';
const TOKEN = 'a-job-secret-of-some-length-42';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function startServer(options: Omit<StoreServerOptions, 'port'> = {}): Promise<TcpStoreServer> {
  const s = await TcpStoreServer.listen({ host: HOST, port: 0, ...options });
  cleanups.push(() => s.close());
  return s;
}

async function connect(port: number, options: { token?: string; identity?: string; timeoutMs?: number } = {}) {
  const c = await TcpStoreClient.connect({ host: HOST, port, timeoutMs: 5_000, ...options });
  cleanups.push(() => c.close({ drainMs: 0 }));
  return c;
}

/** A peer that writes frames by hand and collects what comes back. */
class RawPeer {
  readonly frames: Buffer[] = [];
  readonly sent: Buffer[] = [];
  readonly closed: Promise<void>;
  readonly #decoder = new FrameDecoder(MAX_FRAME_BYTES);
  #wake: (() => void) | undefined;

  private constructor(readonly socket: Socket) {
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      this.#decoder.push(chunk);
      for (let f = this.#decoder.next(); f; f = this.#decoder.next()) this.frames.push(f);
      this.#wake?.();
    });
    this.closed = new Promise((r) => socket.once('close', () => r()));
  }

  static async open(port: number): Promise<RawPeer> {
    const socket = netConnect({ host: HOST, port });
    await new Promise<void>((r) => socket.once('connect', () => r()));
    const peer = new RawPeer(socket);
    cleanups.push(async () => socket.destroy());
    return peer;
  }

  send(frame: Buffer): void {
    this.sent.push(frame);
    this.socket.write(frame);
  }

  /** The next answer: status, id and a reader over the rest. */
  async answer(): Promise<{ status: number; r: FrameReader }> {
    while (this.frames.length === 0) {
      await Promise.race([new Promise<void>((r) => (this.#wake = r)), this.closed]);
      if (this.frames.length === 0 && this.socket.destroyed) throw new Error('closed without an answer');
    }
    const r = new FrameReader(this.frames.shift()!);
    const status = r.u8();
    r.u32();
    return { status, r };
  }

  /** Completes the handshake as a client holding `token` would. */
  async handshake(token: string, identity = ''): Promise<void> {
    const nonce = newNonce();
    this.send(encodeFrame(Op.Hello, 1, [{ u32: PROTOCOL_MAGIC }, { u32: PROTOCOL_VERSION }, { bytes: nonce }]));
    const hello = await this.answer();
    expect(hello.status).toBe(0);
    hello.r.u32();
    hello.r.u32();
    hello.r.u8();
    const serverNonce = Buffer.from(hello.r.bytes(64));
    this.send(encodeFrame(Op.Auth, 2, [{ bytes: clientProof(token, serverNonce, nonce, identity) }, { bytes: Buffer.from(identity) }]));
    expect((await this.answer()).status).toBe(0);
  }
}

const key = (k: string) => ({ bytes: Buffer.from(k) });

describe('TcpStore: authentication', () => {
  it('a client with the job token works, and the token never crosses the wire', async () => {
    const server = await startServer({ token: TOKEN });
    // A relay that records every byte between client and server.
    const seen: Buffer[] = [];
    const relay: Server = createServer((inbound) => {
      const outbound = netConnect({ host: HOST, port: server.port });
      for (const [from, to] of [
        [inbound, outbound],
        [outbound, inbound],
      ] as const) {
        from.on('data', (d: Buffer) => {
          seen.push(d);
          to.write(d);
        });
        from.on('error', () => {});
        from.on('close', () => to.destroy());
      }
    });
    await new Promise<void>((r) => relay.listen(0, HOST, r));
    cleanups.push(() => new Promise((r) => relay.close(r)));
    const c = await connect((relay.address() as AddressInfo).port, { token: TOKEN });
    await c.set('k', 'v');
    expect(new TextDecoder().decode(await c.get('k'))).toBe('v');
    const wire = Buffer.concat(seen);
    for (const form of [Buffer.from(TOKEN), Buffer.from(Buffer.from(TOKEN).toString('base64')), Buffer.from(Buffer.from(TOKEN).toString('hex'))]) {
      expect(wire.includes(form)).toBe(false);
    }
  });

  it('a wrong token, a missing one, or a token against a store without one is refused at once', async () => {
    const secured = await startServer({ token: TOKEN });
    const open = await startServer();
    const t0 = Date.now();
    await expectWideepError(connect(secured.port, { token: 'another-jobs-secret-000000' }), 'ERR_AUTH', `${HOST}:${secured.port}`, 'token');
    await expectWideepError(connect(secured.port), 'ERR_AUTH', 'needs');
    await expectWideepError(connect(open.port, { token: TOKEN }), 'ERR_AUTH', 'has no token');
    expect(Date.now() - t0).toBeLessThan(2_000);
    await vi.waitFor(() => expect(secured.connections + open.connections).toBe(0));
  });

  it('refuses tokens too short to be secrets', async () => {
    await expectWideepError(TcpStoreServer.listen({ host: HOST, port: 0, token: 'short' }), 'ERR_INVALID_ARG', 'at least 16');
    await expectWideepError(TcpStoreClient.connect({ host: HOST, port: 1, token: 'short' }), 'ERR_INVALID_ARG', 'at least 16');
  });

  it('an unauthenticated connection can do nothing, and a replayed proof does not authenticate', async () => {
    const server = await startServer({ token: TOKEN });
    const setFrame = (id: number) => encodeFrame(Op.Set, id, [key('owned'), key('forged')]);

    // A request with no handshake at all.
    const bare = await RawPeer.open(server.port);
    bare.send(setFrame(1));
    await bare.closed;

    // A request after hello, before the proof.
    const halfway = await RawPeer.open(server.port);
    halfway.send(encodeFrame(Op.Hello, 1, [{ u32: PROTOCOL_MAGIC }, { u32: PROTOCOL_VERSION }, { bytes: newNonce() }]));
    expect((await halfway.answer()).status).toBe(0);
    halfway.send(setFrame(2));
    await halfway.closed;

    // A proof recorded from a good handshake, played back on a new connection.
    const good = await RawPeer.open(server.port);
    await good.handshake(TOKEN);
    const replay = await RawPeer.open(server.port);
    replay.send(good.sent[0]!);
    expect((await replay.answer()).status).toBe(0);
    replay.send(good.sent[1]!);
    expect((await replay.answer()).status).toBe(1);
    await replay.closed;

    const c = await connect(server.port, { token: TOKEN });
    await expectWideepError(c.get('owned', { timeoutMs: 100 }), 'ERR_TIMEOUT');
  });

  it('a peer that does not speak the store protocol fails the handshake within seconds, naming the address', async () => {
    const silent = createServer((s) => {
      s.on('error', () => {});
      s.resume();
    });
    await new Promise<void>((r) => silent.listen(0, HOST, r));
    cleanups.push(() => new Promise((r) => silent.close(r)));
    const port = (silent.address() as AddressInfo).port;
    const t0 = Date.now();
    await expectWideepError(TcpStoreClient.connect({ host: HOST, port, timeoutMs: 60_000 }), 'ERR_PROTOCOL', `${HOST}:${port}`, 'not a wideep store');
    expect(Date.now() - t0).toBeLessThan(8_000);
  }, 70_000);
});

describe('TcpStore: limits', () => {
  it('before authentication, a frame header over the handshake limit closes the connection', async () => {
    const server = await startServer({ token: TOKEN });
    const peer = await RawPeer.open(server.port);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(1 << 20);
    peer.send(header);
    await peer.closed;
  });

  it('after authentication, a header over the frame limit closes the connection before any body arrives', async () => {
    const server = await startServer({ token: TOKEN });
    const peer = await RawPeer.open(server.port);
    await peer.handshake(TOKEN);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_FRAME_BYTES + 1);
    peer.send(header);
    await peer.closed;
  });

  it('drops a peer that never completes the handshake', async () => {
    const server = await startServer({ token: TOKEN, limits: { handshakeMs: 200 } });
    const peer = await RawPeer.open(server.port);
    const t0 = Date.now();
    await peer.closed;
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('disconnects a client that does not read its replies; one that reads the same requests is served', async () => {
    const server = await startServer({ token: TOKEN, limits: { maxQueuedReplyBytes: 1 << 20, replyStallMs: 300 } });
    const c = await connect(server.port, { token: TOKEN });
    const value = new Uint8Array(256 * 1024).fill(7);
    await c.set('v', value);
    // The reader: 64 gets in flight at once, 16 MiB of replies.
    const got = await Promise.all(Array.from({ length: 64 }, () => c.get('v')));
    expect(got.every((g) => g.length === value.length)).toBe(true);
    // The non-reader: the same, plus more, and never a byte read.
    const peer = await RawPeer.open(server.port);
    await peer.handshake(TOKEN);
    peer.socket.pause();
    for (let i = 0; i < 400; i++) peer.send(encodeFrame(Op.Get, 10 + i, [key('v'), { f64: 1_000 }]));
    // (A paused socket does not notice its end: watch the server's side.)
    await vi.waitFor(() => expect(server.connections).toBe(1), { timeout: 5_000 });
    expect(new TextDecoder().decode((await c.get('v')).subarray(0, 1))).toBe('\u0007');
  });

  it('refuses more parked requests per connection than its limit, with ERR_BUSY', async () => {
    const server = await startServer({ limits: { maxParkedPerConnection: 4 } });
    const c = await connect(server.port);
    const parked = Array.from({ length: 4 }, (_, i) => c.get(`later-${i}`));
    await vi.waitFor(() => expect(server.parked).toBe(4));
    await expectWideepError(c.get('one-too-many'), 'ERR_BUSY', 'limit');
    for (let i = 0; i < 4; i++) await c.set(`later-${i}`, 'x');
    await Promise.all(parked);
  });
});

describe('TcpStore: identities', () => {
  it('keys under @<identity>/ are written only by the connection registered as it; @store/ by nobody', async () => {
    const server = await startServer({ token: TOKEN });
    const node1 = await connect(server.port, { token: TOKEN, identity: 'node/1' });
    const node2 = await connect(server.port, { token: TOKEN, identity: 'node/2' });
    const anonymous = await connect(server.port, { token: TOKEN });
    await node1.set('@node/1/failure', 'mine');
    for (const other of [node2, anonymous]) {
      for (const write of [
        () => other.set('@node/1/failure', 'forged'),
        () => other.compareSet('@node/1/failure', 'mine', 'forged'),
        () => other.delete('@node/1/failure'),
        () => other.add('@node/1/count', 1),
      ]) {
        await expectWideepError(write, 'ERR_INVALID_ARG', 'node/1');
      }
    }
    expect(new TextDecoder().decode(await node2.get('@node/1/failure'))).toBe('mine');
    await expectWideepError(node1.set('@store/left/node/2', 'x'), 'ERR_INVALID_ARG', 'belongs to the store');
    await expectWideepError(node1.set('@nobody/x', 'x'), 'ERR_INVALID_ARG');
    await expectWideepError(connect(server.port, { token: TOKEN, identity: 'king' }), 'ERR_INVALID_ARG', 'identity');
  });

  it('an identity is held by one connection at a time, and the store records when its holder leaves', async () => {
    const server = await startServer({ token: TOKEN });
    const first = await TcpStoreClient.connect({ host: HOST, port: server.port, token: TOKEN, identity: 'rank/3', timeoutMs: 5_000 });
    const t0 = Date.now();
    await expectWideepError(connect(server.port, { token: TOKEN, identity: 'rank/3' }), 'ERR_INVALID_ARG', 'rank/3 is already connected');
    expect(Date.now() - t0).toBeLessThan(1_000);
    const watcher = await connect(server.port, { token: TOKEN });
    const left = watcher.get('@store/left/rank/3');
    await first.close();
    await left;
    const again = await connect(server.port, { token: TOKEN, identity: 'rank/3' });
    await expectWideepError(again.get('@store/left/rank/3', { timeoutMs: 50 }), 'ERR_TIMEOUT');
  });
});

describe('TcpStore: binding', () => {
  const ip = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  it.skipIf(ip === undefined)('openStore binds only the host it is given, not every interface', async () => {
    const store = await openStore({ host: ip!, port: 0, worldSize: 1, isMaster: true, timeoutMs: 5_000 });
    cleanups.push(() => store.close());
    await expectWideepError(TcpStoreClient.connect({ host: HOST, port: store.port, timeoutMs: 300 }), 'ERR_TIMEOUT', 'ECONNREFUSED');
  });
});
