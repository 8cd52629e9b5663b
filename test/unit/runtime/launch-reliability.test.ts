/**
 * The launcher under abuse (issue 18, items 2 to 5): a closed or slow stdout,
 * its own SIGKILL, nodes that never come or vanish, a port that is not a
 * store, forged failure reports. Real processes on loopback throughout.
 */
import { createServer, connect as netConnect, type AddressInfo, type Server } from 'node:net';
import { networkInterfaces } from 'node:os';

import { afterEach, describe, expect, it, vi } from 'vitest';

import { TcpStoreClient } from '../../../src/runtime/store/index.js';
import { isGone } from '../../helpers/processes.js';
import { TEST_TOKEN, fixture, freePort, launcherHooks, recordedPids, rssMiB, runLauncher, tempDir, type Launcher } from './launcher-process.js';

const CHATTY = fixture('worker-chatty.mjs');
const FLOOD = fixture('worker-flood.mjs');
const HANG = fixture('worker-hang.mjs');

launcherHooks();

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

function expectAllGone(dir: string, count: number): void {
  const pids = recordedPids(dir);
  expect(pids.size).toBe(count);
  for (const [file, pid] of pids) expect(isGone(pid), `${file} (${pid}) is still alive`).toBe(true);
}

/** A TCP server that accepts and never says a word (as a store port taken by something else may). */
async function silentServer(): Promise<number> {
  const s = createServer((socket) => {
    socket.on('error', () => {});
    socket.resume();
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

const nodeArgs = (nodeRank: number, addr: string, script: string, extra: string[] = []) => [
  '--nproc-per-node',
  '2',
  '--nnodes',
  '2',
  '--node-rank',
  String(nodeRank),
  '--dist-init-addr',
  addr,
  ...extra,
  script,
];

describe('wideep launch: its own output', () => {
  it('`| head -3`: a closed stdout ends the job cleanly, with no unhandled error and no orphan', async () => {
    const dir = tempDir();
    const launcher = runLauncher(['--nproc-per-node', '2', CHATTY], { PID_DIR: dir }, { keepStdout: false });
    // Read three lines or more (until both ranks have started), then close the pipe as head does.
    await new Promise<void>((resolve) => {
      let seen = '';
      launcher.child.stdout!.on('data', (d) => {
        seen += d;
        if (seen.split('\n').length > 3 && seen.includes('[rank 1] quiet\n')) {
          launcher.child.stdout!.destroy();
          resolve();
        }
      });
    });
    const run = await launcher.done;
    expect(run.stderr).not.toMatch(/Unhandled|EPIPE.*\n\s+at /);
    expect(run.code).toBe(128 + 13);
    expect(run.stderr).toContain('wideep launch: stdout was closed');
    expect(run.ms).toBeLessThan(15_000);
    expectAllGone(dir, 2);
  });

  it('a slow reader pauses the workers instead of growing the launcher (RSS stays bounded, nothing is lost)', async () => {
    const floodMiB = 256;
    const launcher = runLauncher(['--nproc-per-node', '1', FLOOD], { FLOOD_MB: String(floodMiB) }, { keepStdout: false });
    const stdout = launcher.child.stdout!;
    stdout.pause();
    // Nobody reads for 3 s: a launcher that ignores backpressure buffers everything the worker writes.
    let peak = 0;
    for (let i = 0; i < 30; i++) {
      await new Promise((r) => setTimeout(r, 100));
      peak = Math.max(peak, rssMiB(launcher.pid));
    }
    expect(peak).toBeLessThan(160);
    let bytes = 0;
    stdout.on('data', (d: Buffer) => (bytes += d.length));
    stdout.resume();
    const run = await launcher.done;
    expect(run.code).toBe(0);
    await vi.waitFor(() => expect(stdout.readableEnded || stdout.destroyed).toBe(true));
    const prefix = '[rank 0] '.length;
    expect(bytes).toBe(floodMiB * 1024 * (1024 + prefix));
  });
});

describe('wideep launch: its own death', () => {
  it('SIGKILL of the launcher: every worker, and what they spawned, is gone within 5 s', async () => {
    const dir = tempDir();
    const launcher = runLauncher(['--nproc-per-node', '4', HANG], { PID_DIR: dir });
    await launcher.lines(/^\[rank \d\] ready$/, 4);
    launcher.kill('SIGKILL');
    await launcher.done;
    const pids = recordedPids(dir);
    expect(pids.size).toBe(5);
    await vi.waitFor(
      () => {
        for (const [file, pid] of pids) expect(isGone(pid), `${file} (${pid}) is still alive`).toBe(true);
      },
      { timeout: 5_000, interval: 100 },
    );
  });
});

describe('wideep launch: nodes that never come, and signals in every phase', () => {
  it('--rdzv-timeout bounds node 0 waiting for the other nodes', async () => {
    const port = await freePort();
    const run = await runLauncher(nodeArgs(0, `127.0.0.1:${port}`, HANG, ['--rdzv-timeout', '1']), { WIDEEP_STORE_TOKEN: TEST_TOKEN }).done;
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('node 1 did not join within 1 s');
    expect(run.ms).toBeLessThan(8_000);
  });

  it('SIGTERM ends node 0 while it waits for a node that never joins', async () => {
    const port = await freePort();
    const launcher = runLauncher(nodeArgs(0, `127.0.0.1:${port}`, 'true'), { WIDEEP_STORE_TOKEN: TEST_TOKEN });
    await launcher.errLine(/waiting for node 1/);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    launcher.kill('SIGTERM');
    const run = await launcher.done;
    expect(run.code).toBe(128 + 15);
    expect(run.stderr).toContain('wideep launch: received SIGTERM');
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('SIGTERM ends node 0 while it waits for the other nodes to finish, after its own workers exited 0', async () => {
    const port = await freePort();
    const env = { WIDEEP_STORE_TOKEN: TEST_TOKEN, PID_DIR: tempDir() };
    const n0 = runLauncher(nodeArgs(0, `127.0.0.1:${port}`, 'true'), env);
    const n1 = runLauncher(nodeArgs(1, `127.0.0.1:${port}`, HANG), env);
    await n0.errLine(/waiting for the other nodes to finish/);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    n0.kill('SIGTERM');
    const run = await n0.done;
    expect(run.code).toBe(128 + 15);
    expect(run.stderr).toContain('wideep launch: received SIGTERM');
    expect(Date.now() - t0).toBeLessThan(5_000);
    // Node 1 loses node 0's store and stops as well.
    const other = await n1.done;
    expect(other.code).toBe(1);
    expect(other.stderr).toContain("lost the launchers' store");
  });

  it('SIGINT ends a node while it is still trying to reach node 0', async () => {
    const port = await freePort();
    const launcher = runLauncher(nodeArgs(1, `127.0.0.1:${port}`, 'true'), { WIDEEP_STORE_TOKEN: TEST_TOKEN });
    await launcher.errLine(/connecting to node 0/);
    const t0 = Date.now();
    launcher.kill('SIGINT');
    const run = await launcher.done;
    expect(run.code).toBe(128 + 2);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('a node whose store address is not a wideep store fails within seconds, naming the address', async () => {
    const port = await silentServer();
    const run = await runLauncher(nodeArgs(1, `127.0.0.1:${port}`, 'true'), { WIDEEP_STORE_TOKEN: TEST_TOKEN }).done;
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`127.0.0.1:${port}`);
    expect(run.stderr).toContain('not a wideep store');
    expect(run.ms).toBeLessThan(15_000);
  }, 30_000);

  it('a node whose launcher is killed stops the other node, which names it', async () => {
    const port = await freePort();
    const dir = tempDir();
    const env = { PID_DIR: dir, WIDEEP_STORE_TOKEN: TEST_TOKEN };
    const n0 = runLauncher(nodeArgs(0, `127.0.0.1:${port}`, HANG), env);
    const n1 = runLauncher(nodeArgs(1, `127.0.0.1:${port}`, HANG), env);
    await Promise.all([n0.lines(/ready$/, 2), n1.lines(/ready$/, 2)]);
    n1.kill('SIGKILL');
    const run = await n0.done;
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("node 1's launcher left the job");
    await vi.waitFor(() => expectAllGone(dir, 5), { timeout: 10_000, interval: 100 });
  });
});

describe('wideep launch: the job store', () => {
  it('a job over several nodes needs a shared secret', async () => {
    const run = await runLauncher(nodeArgs(0, '127.0.0.1:1', 'true'), { WIDEEP_STORE_TOKEN: '' }).done;
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--rdzv-token');
  });

  it('forged failure reports, from outside the job or from another connection of it, stop nothing', async () => {
    const port = await freePort();
    const dir = tempDir();
    const env = { PID_DIR: dir, WIDEEP_STORE_TOKEN: TEST_TOKEN };
    const nodes: Launcher[] = [0, 1].map((n) => runLauncher(nodeArgs(n, `127.0.0.1:${port}`, HANG), env));
    await Promise.all(nodes.map((n) => n.lines(/ready$/, 2)));
    const forged = JSON.stringify({ rank: 999, nodeRank: 7, exitCode: 42, signal: null });

    // From outside: no token.
    const outsider = await TcpStoreClient.connect({ host: '127.0.0.1', port, timeoutMs: 3_000 }).catch((e: Error) => e);
    if (!(outsider instanceof Error)) {
      await outsider.compareSet('wideep/launch/failed', null, forged).catch(() => {});
      await outsider.close();
    }
    expect(outsider).toBeInstanceOf(Error);

    // From inside (a worker holds the token): a claim for node 1 from a connection that is not node 1's launcher.
    const insider = await TcpStoreClient.connect({ host: '127.0.0.1', port, timeoutMs: 3_000, token: TEST_TOKEN });
    const refused = await insider.set('@node/1/failure', forged).catch((e: Error) => e);
    await insider.close();
    expect(refused).toBeInstanceOf(Error);
    expect((refused as Error).message).toContain('node/1');

    await new Promise((r) => setTimeout(r, 1_000));
    for (const n of nodes) expect(n.child.exitCode).toBeNull();
    for (const n of nodes) n.kill('SIGTERM');
    const runs = await Promise.all(nodes.map((n) => n.done));
    for (const r of runs) expect(r.stderr).not.toContain('rank 999');
  });

  const ip = Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  it.skipIf(ip === undefined)('node 0 binds only the address it is given, not every interface', async () => {
    const port = await freePort(ip);
    const launcher = runLauncher(nodeArgs(0, `${ip}:${port}`, HANG, ['--rdzv-timeout', '30']), { WIDEEP_STORE_TOKEN: TEST_TOKEN, PID_DIR: tempDir() });
    await launcher.errLine(/waiting for node 1/);
    const viaLoopback = await new Promise<string>((resolve) => {
      const s = netConnect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    expect(viaLoopback).toBe('ECONNREFUSED');
    launcher.kill('SIGTERM');
    expect((await launcher.done).code).toBe(128 + 15);
  });
});
