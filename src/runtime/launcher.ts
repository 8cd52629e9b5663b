/**
 * `wideep launch` as a library: spawn one worker per local rank, prefix their
 * output, and tear the whole job down when one of them fails.
 *
 * Each worker starts in its own process group (`detached`), and every signal
 * goes to the group, so whatever a worker spawned goes with it. Node 0's
 * launcher hosts the job's store; with several nodes, the launchers use it to
 * hear of each other's failures (FAILED_KEY) and completions (doneKey).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

import { WideepError, assertInteger, isWideepError } from '../errors.js';
import { DEFAULT_MASTER_ADDR, DEFAULT_MASTER_PORT } from './env.js';
import { STORE_HOSTED_VAR } from './process-group.js';
import { TcpStoreClient, TcpStoreServer, isLoopback } from './store/index.js';

/** Time between SIGTERM and SIGKILL. */
export const DEFAULT_GRACE_MS = 3_000;
/** Most processes one launcher starts. */
export const MAX_NPROC_PER_NODE = 1024;
/** A worker's line longer than this is passed on in pieces rather than held. */
const MAX_PARTIAL_LINE = 64 * 1024;
/** How often the final sweep looks whether a worker's leftover processes have gone (no event exists for them). */
const SWEEP_INTERVAL_MS = 50;
/** How long the launcher waits for worker pipes to close once every process is gone. */
const PIPE_CLOSE_MS = 1_000;

const FAILED_KEY = 'wideep/launch/failed';
const doneKey = (nodeRank: number) => `wideep/launch/done/${nodeRank}`;
const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export interface LaunchOptions {
  /** The worker program: `.js`/`.mjs`/`.cjs` runs under this Node, anything else is executed. */
  script: string;
  /** Arguments for the script. */
  args?: readonly string[];
  nprocPerNode: number;
  /** Nodes in the job (default 1). */
  nnodes?: number;
  /** This node's index (default 0). Node 0's launcher hosts the store. */
  nodeRank?: number;
  /** Node 0's address (default 127.0.0.1; required with nnodes > 1). */
  masterAddr?: string;
  /** The store's port (default: a free port for one node, 29500 for several). */
  masterPort?: number;
  /** The workers' base environment (default process.env); rank variables are added to it. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Where prefixed worker stdout goes (default process.stdout). */
  stdout?: (text: string) => void;
  /** Where prefixed worker stderr goes (default process.stderr). */
  stderr?: (text: string) => void;
  /** SIGTERM → SIGKILL grace (ms, default 3000). */
  graceMs?: number;
  /** Forward SIGINT/SIGTERM/SIGHUP received by this process to the workers (default true). */
  forwardSignals?: boolean;
  /** Limit for reaching node 0's store from other nodes (ms, default 300 s). */
  storeTimeoutMs?: number;
}

export interface RankExit {
  rank: number;
  localRank: number;
  pid: number | undefined;
  /** Exit code, or null when killed by a signal or never started. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Why the process could not start. */
  error?: string;
}

export interface LaunchFailure {
  rank: number;
  nodeRank: number;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  error?: string;
}

export interface LaunchResult {
  ok: boolean;
  worldSize: number;
  nnodes: number;
  nodeRank: number;
  /** This node's ranks, in local order. */
  ranks: RankExit[];
  /** The rank whose failure stopped the job (possibly on another node), else null. */
  failedRank: number | null;
  failure: LaunchFailure | null;
  /** The signal this launcher received and forwarded, if any. */
  signal: NodeJS.Signals | null;
  /** Local ranks that were still running when the job was stopped. */
  stoppedRanks: number[];
  /** What went wrong, for the user; null when ok. */
  message: string | null;
  /** The exit status a CLI should return: 0, 1, or 128 + signal number. */
  exitCode: number;
}

interface Worker {
  child: ChildProcess;
  exit: RankExit;
  exited: Promise<void>;
  closed: Promise<void>;
}

/** Sends `signal` to a whole process group; false when the group is gone. */
function signalGroup(pgid: number | undefined, signal: NodeJS.Signals | 0): boolean {
  if (pgid === undefined) return false;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether any process of the group still lives. A zombie does not count: an
 * orphan that has died waits for init to reap it, and some inits (in
 * containers, often) never do. Linux's /proc tells them apart; without it,
 * any member counts.
 */
function groupAlive(pgid: number | undefined): boolean {
  if (!signalGroup(pgid, 0)) return false;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return true;
  }
  for (const pid of pids) {
    try {
      // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true;
    } catch {
      // it exited meanwhile
    }
  }
  return false;
}

/** Copies a stream to `sink` line by line with `prefix`; a last partial line is flushed at the end. */
function pipeLines(stream: Readable, prefix: string, sink: (text: string) => void): void {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  stream.on('data', (chunk: Buffer) => {
    const lines = (partial + decoder.write(chunk)).split('\n');
    partial = lines.pop()!;
    if (partial.length > MAX_PARTIAL_LINE) {
      lines.push(partial);
      partial = '';
    }
    if (lines.length > 0) sink(lines.map((l) => `${prefix}${l}\n`).join(''));
  });
  stream.once('close', () => {
    partial += decoder.end();
    if (partial) sink(`${prefix}${partial}\n`);
    partial = '';
  });
}

function describeExit(e: { exitCode: number | null; signal: NodeJS.Signals | null; error?: string }): string {
  if (e.error !== undefined) return `could not start (${e.error})`;
  if (e.signal) return `was killed by ${e.signal}`;
  return `exited with code ${e.exitCode}`;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function workerCommand(script: string, args: readonly string[]): [string, string[]] {
  if (/\.[cm]?js$/i.test(script)) return [process.execPath, [script, ...args]];
  // A file here runs as a path; a bare name is looked up in PATH.
  return [existsSync(script) ? resolvePath(script) : script, [...args]];
}

function checkOptions(o: LaunchOptions) {
  if (typeof o?.script !== 'string' || o.script === '') {
    throw new WideepError('ERR_INVALID_ARG', `launch script: expected a path, got ${JSON.stringify(o?.script)}`);
  }
  const nproc = assertInteger('nprocPerNode', o.nprocPerNode, 1, MAX_NPROC_PER_NODE);
  const nnodes = assertInteger('nnodes', o.nnodes ?? 1, 1);
  const nodeRank = assertInteger('nodeRank', o.nodeRank ?? 0, 0);
  if (nodeRank >= nnodes) throw new WideepError('ERR_INVALID_ARG', `nodeRank ${nodeRank} must be below nnodes ${nnodes}`);
  if (nnodes > 1 && o.masterAddr === undefined) {
    throw new WideepError('ERR_INVALID_ARG', `a job over ${nnodes} nodes needs node 0's address (masterAddr, --dist-init-addr)`);
  }
  const masterAddr = o.masterAddr ?? DEFAULT_MASTER_ADDR;
  if (typeof masterAddr !== 'string' || masterAddr === '') {
    throw new WideepError('ERR_INVALID_ARG', `masterAddr: expected a host, got ${JSON.stringify(masterAddr)}`);
  }
  const masterPort = assertInteger('masterPort', o.masterPort ?? (nnodes === 1 ? 0 : DEFAULT_MASTER_PORT), nodeRank === 0 ? 0 : 1, 65535);
  const graceMs = assertInteger('graceMs', o.graceMs ?? DEFAULT_GRACE_MS, 0);
  return { nproc, nnodes, nodeRank, masterAddr, masterPort, graceMs };
}

/**
 * Runs `nprocPerNode` workers of the script on this node and waits for them.
 * It resolves (rather than rejects) when a worker fails; it rejects only
 * when the job cannot start (bad options, the store's port taken, node 0
 * unreachable).
 */
export async function launch(options: LaunchOptions): Promise<LaunchResult> {
  const { nproc, nnodes, nodeRank, masterAddr, masterPort, graceMs } = checkOptions(options);
  const worldSize = nnodes * nproc;
  const out = options.stdout ?? ((t: string) => void process.stdout.write(t));
  const err = options.stderr ?? ((t: string) => void process.stderr.write(t));

  const server =
    nodeRank === 0
      ? await TcpStoreServer.listen({ host: isLoopback(masterAddr) ? masterAddr : undefined, port: masterPort })
      : undefined;
  const port = server?.port ?? masterPort;
  let client: TcpStoreClient | undefined;
  try {
    if (nnodes > 1) {
      client = await TcpStoreClient.connect({ host: masterAddr, port, timeoutMs: options.storeTimeoutMs });
    }
    return await runWorkers();
  } finally {
    await client?.close({ drainMs: 0 });
    await server?.close({ drainMs: graceMs });
  }

  async function runWorkers(): Promise<LaunchResult> {
    const [command, args] = workerCommand(options.script, options.args ?? []);
    const baseEnv = options.env ?? process.env;
    const workers: Worker[] = [];
    let stopping = false;
    let failure: LaunchFailure | null = null;
    let received: NodeJS.Signals | null = null;
    let lostStore: string | null = null;
    let stoppedRanks: number[] = [];
    let killTimer: NodeJS.Timeout | undefined;
    let termSentAt: number | undefined;
    let finished = false;
    let reported: Promise<unknown> = Promise.resolve();

    const groups = () => workers.map((w) => w.exit.pid);

    /** Stops every worker: `signal` now, SIGKILL after the grace. */
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      stoppedRanks = workers
        .filter((w) => w.exit.pid !== undefined && w.exit.exitCode === null && w.exit.signal === null)
        .map((w) => w.exit.rank);
      termSentAt = Date.now();
      for (const pgid of groups()) signalGroup(pgid, signal);
      killTimer = setTimeout(() => {
        for (const pgid of groups()) signalGroup(pgid, 'SIGKILL');
      }, graceMs);
    };

    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        // Already stopping (a second Ctrl-C, say): no more grace.
        for (const pgid of groups()) signalGroup(pgid, 'SIGKILL');
        return;
      }
      received = signal;
      stop(signal);
    };
    const forward = options.forwardSignals ?? true;
    if (forward) for (const s of FORWARDED_SIGNALS) process.on(s, onSignal);

    const onFailure = (f: LaunchFailure): void => {
      if (stopping) return;
      failure = f;
      stop('SIGTERM');
      // The first failure anywhere wins; the other launchers are watching this key.
      if (client) reported = client.compareSet(FAILED_KEY, null, JSON.stringify(f)).catch(() => {});
    };

    try {
      for (let localRank = 0; localRank < nproc; localRank++) {
        const rank = nodeRank * nproc + localRank;
        const env: Record<string, string | undefined> = {
          ...baseEnv,
          RANK: String(rank),
          LOCAL_RANK: String(localRank),
          WORLD_SIZE: String(worldSize),
          LOCAL_WORLD_SIZE: String(nproc),
          GROUP_RANK: String(nodeRank),
          NODE_RANK: String(nodeRank),
          GROUP_WORLD_SIZE: String(nnodes),
          MASTER_ADDR: masterAddr,
          MASTER_PORT: String(port),
          [STORE_HOSTED_VAR]: '1',
        };
        const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
        const exit: RankExit = { rank, localRank, pid: child.pid, exitCode: null, signal: null };
        const prefix = `[rank ${rank}] `;
        pipeLines(child.stdout!, prefix, out);
        pipeLines(child.stderr!, prefix, err);
        const exited = new Promise<void>((resolve) => {
          child.once('exit', (code, signal) => {
            exit.exitCode = code;
            exit.signal = signal;
            resolve();
            if (code !== 0) onFailure({ rank, nodeRank, exitCode: code, signal });
          });
          child.once('error', (e) => {
            if (child.pid !== undefined) return; // a failed kill() and the like; 'exit' still comes
            exit.error = e.message;
            resolve();
            onFailure({ rank, nodeRank, exitCode: null, signal: null, error: e.message });
          });
        });
        const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
        workers.push({ child, exit, exited, closed });
      }

      // Other nodes: their failures stop us too; losing node 0's store does as well.
      client?.get(FAILED_KEY, { timeoutMs: Infinity }).then(
        (bytes) => {
          if (finished || stopping) return;
          const f = JSON.parse(Buffer.from(bytes).toString('utf8')) as LaunchFailure;
          if (f.nodeRank === nodeRank) return;
          failure = f;
          stop('SIGTERM');
        },
        (e: unknown) => {
          if (finished || stopping || isWideepError(e, 'ERR_CLOSED')) return;
          lostStore = `lost the launchers' store at ${masterAddr}:${port} (${(e as Error).message})`;
          stop('SIGTERM');
        },
      );

      await Promise.all(workers.map((w) => w.exited));
      clearTimeout(killTimer);
      await sweep(workers, termSentAt, graceMs);
      let pipeTimer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(workers.map((w) => w.closed)),
        new Promise((resolve) => (pipeTimer = setTimeout(resolve, PIPE_CLOSE_MS))),
      ]);
      clearTimeout(pipeTimer);
      for (const w of workers) {
        w.child.stdout?.destroy();
        w.child.stderr?.destroy();
      }
      await reported;

      if (!stopping && client) {
        // Everyone here succeeded: report it, and on node 0 keep the store up until every node has.
        await client.set(doneKey(nodeRank), 'ok').catch(() => {});
        if (nodeRank === 0) {
          const others = Array.from({ length: nnodes - 1 }, (_, i) => doneKey(i + 1));
          const remote = await Promise.race([
            client.wait(others, { timeoutMs: Infinity }).then(() => null),
            client.get(FAILED_KEY, { timeoutMs: Infinity }).then((b) => JSON.parse(Buffer.from(b).toString('utf8')) as LaunchFailure),
          ]).catch(() => null);
          if (remote) failure = remote;
        }
      }
    } catch (e) {
      // Not a worker's failure but ours (spawn refused its arguments, say): leave nothing running.
      for (const pgid of groups()) signalGroup(pgid, 'SIGKILL');
      throw e;
    } finally {
      finished = true;
      if (forward) for (const s of FORWARDED_SIGNALS) process.off(s, onSignal);
    }

    const ranks = workers.map((w) => w.exit);
    const f = failure as LaunchFailure | null;
    const ok = f === null && received === null && lostStore === null && ranks.every((r) => r.exitCode === 0);
    let message: string | null = null;
    if (!ok) {
      const stopped = stoppedRanks.length ? `stopped ranks ${stoppedRanks.join(', ')}` : 'no other rank was still running';
      if (received) message = `received ${received}; ${stopped}`;
      else if (f) message = `rank ${f.rank}${f.nodeRank !== nodeRank ? ` on node ${f.nodeRank}` : ''} ${describeExit(f)}; ${stopped}`;
      else if (lostStore) message = `${lostStore}; ${stopped}`;
    }
    const signalNumber = received ? (osConstants.signals[received] ?? 15) : 0;
    return {
      ok,
      worldSize,
      nnodes,
      nodeRank,
      ranks,
      failedRank: f?.rank ?? null,
      failure: f,
      signal: received,
      stoppedRanks,
      message,
      exitCode: ok ? 0 : received ? 128 + signalNumber : 1,
    };
  }
}

/**
 * The last step: whatever is left in a worker's process group (the worker
 * is gone, something it spawned may not be) gets SIGTERM, and SIGKILL once
 * the grace since the first SIGTERM has run out.
 */
async function sweep(workers: readonly Worker[], termSentAt: number | undefined, graceMs: number): Promise<void> {
  let left = workers.map((w) => w.exit.pid).filter(groupAlive);
  if (left.length === 0) return;
  if (termSentAt === undefined) {
    for (const pgid of left) signalGroup(pgid, 'SIGTERM');
    termSentAt = Date.now();
  }
  while (left.length > 0 && Date.now() - termSentAt < graceMs) {
    await sleep(SWEEP_INTERVAL_MS);
    left = left.filter(groupAlive);
  }
  for (const pgid of left) signalGroup(pgid, 'SIGKILL');
}
