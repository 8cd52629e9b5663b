/**
 * `wideep launch` as a library: spawn one worker per local rank, prefix their
 * output, and tear the whole job down when one of them fails.
 *
 * Each worker starts in its own process group, and every signal goes to the
 * group, so whatever a worker spawned goes with it; if the launcher itself
 * dies, its workers learn it and end (launch/launcher-watch.ts). Node 0's
 * launcher hosts the job's store, which serves only holders of the job's
 * secret; with several nodes, the launchers meet there before starting any
 * worker and hear there of each other's failures (launch/node-link.ts).
 * docs/reliability.md says what each of these promises and how it is tested.
 */
import { constants as osConstants } from 'node:os';

import { WideepError, assertInteger } from '../errors.js';
import { DEFAULT_MASTER_ADDR, DEFAULT_MASTER_PORT } from './env.js';
import { NodeLink, type LaunchFailure, type RemoteStop } from './launch/node-link.js';
import { OutputForwarder, type OutputSink } from './launch/output.js';
import { LauncherSignals } from './launch/signals.js';
import { WorkerSet, type RankExit } from './launch/workers.js';
import { DEVICE_VAR, STORE_HOSTED_VAR, STORE_TOKEN_VAR } from './process-group.js';
import { checkToken } from './store/auth.js';
import { TcpStoreServer, isLoopback, newToken } from './store/index.js';

export type { LaunchFailure, OutputSink, RankExit };

/** Time between SIGTERM and SIGKILL. */
export const DEFAULT_GRACE_MS = 3_000;
/** Most processes one launcher starts. */
export const MAX_NPROC_PER_NODE = 1024;
/** Default limit for reaching node 0 and for every node to join: 300 s. */
export const DEFAULT_RDZV_TIMEOUT_MS = 300_000;

export interface LaunchOptions {
  /** The worker program: `.js`/`.mjs`/`.cjs` runs under this Node, anything else is executed. */
  script: string;
  /** Arguments for the script. */
  args?: readonly string[];
  nprocPerNode: number;
  /** Nodes in the job (default 1). */
  nnodes?: number;
  /**
   * Run all nnodes nodes on this machine, for testing multi-node code on one
   * host: node n's workers get node n's place in the rank variables and, unless
   * WIDEEP_DEVICE pins them, the n-th run of nprocPerNode GPUs as their
   * CUDA_VISIBLE_DEVICES (nodeVisibleDevices), so each node sees its own GPUs
   * only, as on a real node. One launcher, one store: no nodeRank, no token needed.
   */
  singleHost?: boolean;
  /** This node's index (default 0). Node 0's launcher hosts the store. */
  nodeRank?: number;
  /** Node 0's address (default 127.0.0.1; required with nnodes > 1). Node 0's store binds this address only. */
  masterAddr?: string;
  /** The store's port (default: a free port for one node, 29500 for several). */
  masterPort?: number;
  /** The workers' base environment (default process.env); rank variables are added to it. */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * Where prefixed worker stdout goes (default process.stdout). A stream is
   * written with backpressure: a slow reader pauses the workers' pipes. A
   * stream that breaks (EPIPE) stops the job, as SIGPIPE would.
   */
  stdout?: OutputSink;
  /** Where prefixed worker stderr and the launcher's own notes go (default process.stderr). */
  stderr?: OutputSink;
  /** SIGTERM → SIGKILL grace (ms, default 3000). */
  graceMs?: number;
  /** Take over SIGINT/SIGTERM/SIGHUP received by this process in every phase, and forward them to the workers (default true). */
  forwardSignals?: boolean;
  /** Limit for reaching node 0's store and for every node to join (ms, default 300 s). */
  rdzvTimeoutMs?: number;
  /**
   * The job's secret (at least 16 characters): the store serves only its
   * holders. Default: WIDEEP_STORE_TOKEN of `env`; with one node and none
   * set, a fresh one. A job over several nodes needs the same one on every node.
   */
  token?: string;
}

export interface LaunchResult {
  ok: boolean;
  worldSize: number;
  nnodes: number;
  nodeRank: number;
  /** This node's ranks, in local order (empty when the job was interrupted before any started). */
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
  /** The exit status a CLI should return: 0, 1, or 128 + signal number (SIGPIPE's when the output broke). */
  exitCode: number;
}

interface Settings {
  script: string;
  args: readonly string[];
  nproc: number;
  nnodes: number;
  nodeRank: number;
  singleHost: boolean;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  graceMs: number;
  rdzvTimeoutMs: number;
  token: string;
  env: Readonly<Record<string, string | undefined>>;
}

function checkOptions(o: LaunchOptions): Settings {
  if (typeof o?.script !== 'string' || o.script === '') {
    throw new WideepError('ERR_INVALID_ARG', `launch script: expected a path, got ${JSON.stringify(o?.script)}`);
  }
  const nproc = assertInteger('nprocPerNode', o.nprocPerNode, 1, MAX_NPROC_PER_NODE);
  const singleHost = o.singleHost === true;
  const nnodes = assertInteger('nnodes', o.nnodes ?? 1, 1, singleHost ? Math.floor(MAX_NPROC_PER_NODE / nproc) : undefined);
  const nodeRank = assertInteger('nodeRank', o.nodeRank ?? 0, 0);
  if (nodeRank >= nnodes) throw new WideepError('ERR_INVALID_ARG', `nodeRank ${nodeRank} must be below nnodes ${nnodes}`);
  if (singleHost && nodeRank !== 0) {
    throw new WideepError('ERR_INVALID_ARG', `singleHost runs every node here: nodeRank ${nodeRank} has no meaning with it`);
  }
  const oneLauncher = nnodes === 1 || singleHost;
  if (!oneLauncher && o.masterAddr === undefined) {
    throw new WideepError('ERR_INVALID_ARG', `a job over ${nnodes} nodes needs node 0's address (masterAddr, --dist-init-addr)`);
  }
  const masterAddr = o.masterAddr ?? DEFAULT_MASTER_ADDR;
  if (typeof masterAddr !== 'string' || masterAddr === '') {
    throw new WideepError('ERR_INVALID_ARG', `masterAddr: expected a host, got ${JSON.stringify(masterAddr)}`);
  }
  const masterPort = assertInteger('masterPort', o.masterPort ?? (oneLauncher ? 0 : DEFAULT_MASTER_PORT), nodeRank === 0 ? 0 : 1, 65535);
  const graceMs = assertInteger('graceMs', o.graceMs ?? DEFAULT_GRACE_MS, 0);
  const rdzvTimeoutMs = assertInteger('rdzvTimeoutMs', o.rdzvTimeoutMs ?? DEFAULT_RDZV_TIMEOUT_MS, 1, 2 ** 31 - 1);
  const env = o.env ?? process.env;
  let token = checkToken('launch token', o.token ?? (env[STORE_TOKEN_VAR] || undefined));
  if (token === undefined) {
    if (!oneLauncher) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `a job over ${nnodes} nodes needs a secret shared by every node: --rdzv-token or ${STORE_TOKEN_VAR} (e.g. \`openssl rand -hex 32\`)`,
      );
    }
    token = newToken();
  }
  const args = o.args ?? [];
  return { script: o.script, args, nproc, nnodes, nodeRank, singleHost, worldSize: nnodes * nproc, masterAddr, masterPort, graceMs, rdzvTimeoutMs, token, env };
}

function describeExit(e: { exitCode: number | null; signal: NodeJS.Signals | null; error?: string }): string {
  if (e.error !== undefined) return `could not start (${e.error})`;
  if (e.signal) return `was killed by ${e.signal}`;
  return `exited with code ${e.exitCode}`;
}

function describeFailure(f: LaunchFailure, nodeRank: number): string {
  if (f.rank === null) return `node ${f.nodeRank}'s launcher ${f.error ?? 'was lost'}`;
  return `rank ${f.rank}${f.nodeRank !== nodeRank ? ` on node ${f.nodeRank}` : ''} ${describeExit(f)}`;
}

const signalStatus = (s: NodeJS.Signals) => 128 + (osConstants.signals[s] ?? 15);

/**
 * With singleHost, node `node`'s share of this machine's GPUs: the node-th run
 * of `nproc` entries of CUDA_VISIBLE_DEVICES (or of GPU indices 0, 1, ...
 * when it is unset), so that each node sees its own GPUs as 0..nproc-1.
 * Nothing when WIDEEP_DEVICE pins every worker to one GPU.
 */
export function nodeVisibleDevices(env: Readonly<Record<string, string | undefined>>, node: number, nproc: number): { CUDA_VISIBLE_DEVICES?: string } {
  if (env[DEVICE_VAR] !== undefined) return {};
  const listed = env.CUDA_VISIBLE_DEVICES?.split(',').map((d) => d.trim());
  const all = listed ?? Array.from({ length: (node + 1) * nproc }, (_, i) => String(i));
  return { CUDA_VISIBLE_DEVICES: all.slice(node * nproc, (node + 1) * nproc).join(',') };
}

/**
 * Runs `nprocPerNode` workers of the script on this node and waits for them.
 * It resolves (rather than rejects) when a worker fails or a signal stops
 * the job, in whatever phase; it rejects only when the job cannot start (bad
 * options, the store's port taken, node 0 unreachable or not a wideep
 * store, a node missing at the rendezvous timeout).
 */
export async function launch(options: LaunchOptions): Promise<LaunchResult> {
  const s = checkOptions(options);
  const signals = new LauncherSignals(options.forwardSignals ?? true);
  let outputLost: string | null = null;
  let stopForOutput: (() => void) | undefined;
  const broken = (name: string) => (e: NodeJS.ErrnoException) => {
    outputLost ??= `${name} was closed (${e.code ?? e.message})`;
    stopForOutput?.();
  };
  const out = new OutputForwarder(options.stdout ?? process.stdout, broken('stdout'));
  const err = new OutputForwarder(options.stderr ?? process.stderr, broken('stderr'));
  const interrupted = (): LaunchResult => {
    const signal = signals.received!;
    return {
      ok: false,
      worldSize: s.worldSize,
      nnodes: s.nnodes,
      nodeRank: s.nodeRank,
      ranks: [],
      failedRank: null,
      failure: null,
      signal,
      stoppedRanks: [],
      message: `received ${signal} before any worker started`,
      exitCode: signalStatus(signal),
    };
  };

  let server: TcpStoreServer | undefined;
  let link: NodeLink | undefined;
  try {
    server = s.nodeRank === 0 ? await TcpStoreServer.listen({ host: s.masterAddr, port: s.masterPort, token: s.token }) : undefined;
    const port = server?.port ?? s.masterPort;
    if (server && s.nnodes > 1 && !s.singleHost && isLoopback(server.address)) {
      const where = `${server.address} (${s.masterAddr})`;
      err.say(`wideep launch: warning: node 0's store listens on ${where}, a loopback address other machines cannot reach`);
    }
    if (s.nnodes > 1 && !s.singleHost) {
      try {
        link = await NodeLink.join({
          host: s.masterAddr,
          port,
          nodeRank: s.nodeRank,
          nnodes: s.nnodes,
          token: s.token,
          rdzvTimeoutMs: s.rdzvTimeoutMs,
          signal: signals.signal,
          log: (t) => err.say(t),
        });
      } catch (e) {
        if (signals.received) return interrupted();
        throw e;
      }
    }
    if (signals.received) return interrupted();
    const result = await runJob(s, port, link, signals, out, err, (stop) => (stopForOutput = stop));
    if (outputLost && result.signal === null) {
      // The output broke: the job was stopped as SIGPIPE would have stopped a C program.
      return { ...result, ok: false, message: `${outputLost}; ${describeStopped(result.stoppedRanks)}`, exitCode: signalStatus('SIGPIPE') };
    }
    return result;
  } finally {
    signals.dispose();
    out.close();
    err.close();
    await link?.close();
    await server?.close({ drainMs: s.graceMs });
  }
}

function describeStopped(stoppedRanks: readonly number[]): string {
  return stoppedRanks.length ? `stopped ranks ${stoppedRanks.join(', ')}` : 'no other rank was still running';
}

/** Starts the workers and follows them to the end, stopping them all at the first reason. */
async function runJob(
  s: Settings,
  port: number,
  link: NodeLink | undefined,
  signals: LauncherSignals,
  out: OutputForwarder,
  err: OutputForwarder,
  onOutputLost: (stop: () => void) => void,
): Promise<LaunchResult> {
  let failure: LaunchFailure | null = null;
  let lost: string | null = null;
  let received: NodeJS.Signals | null = null;
  let stopping = false;
  let stoppedRanks: number[] = [];
  let reported: Promise<unknown> = Promise.resolve();
  let markStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (markStopped = resolve));

  const nodes = s.singleHost ? Array.from({ length: s.nnodes }, (_, n) => n) : [s.nodeRank];
  const nodeOf = (rank: number) => Math.floor(rank / s.nproc);
  const workers = new WorkerSet({
    script: s.script,
    args: s.args,
    ranks: nodes.flatMap((n) => Array.from({ length: s.nproc }, (_, localRank) => ({ rank: n * s.nproc + localRank, localRank }))),
    stdout: out,
    stderr: err,
    graceMs: s.graceMs,
    envFor: (localRank, rank) => ({
      ...s.env,
      RANK: String(rank),
      LOCAL_RANK: String(localRank),
      WORLD_SIZE: String(s.worldSize),
      LOCAL_WORLD_SIZE: String(s.nproc),
      GROUP_RANK: String(nodeOf(rank)),
      NODE_RANK: String(nodeOf(rank)),
      GROUP_WORLD_SIZE: String(s.nnodes),
      MASTER_ADDR: s.masterAddr,
      MASTER_PORT: String(port),
      [STORE_HOSTED_VAR]: '1',
      [STORE_TOKEN_VAR]: s.token,
      ...(s.singleHost && nodeVisibleDevices(s.env, nodeOf(rank), s.nproc)),
    }),
    onExit: (e) => {
      if (e.exitCode === 0 || stopping) return;
      failure = { rank: e.rank, nodeRank: nodeOf(e.rank), exitCode: e.exitCode, signal: e.signal, ...(e.error !== undefined && { error: e.error }) };
      stop('SIGTERM');
      if (link) reported = link.report(failure);
    },
  });

  /** Stops every worker: `signal` now, SIGKILL after the grace. */
  function stop(signal: NodeJS.Signals): void {
    if (stopping) return;
    stopping = true;
    stoppedRanks = workers.running;
    workers.stop(signal);
    markStopped();
  }

  signals.handle((signal, repeated) => {
    // A second signal (Ctrl-C again): no more grace.
    if (repeated) return workers.kill();
    received = signal;
    stop(signal);
  });
  onOutputLost(() => stop('SIGTERM'));
  let finished = false;
  link?.watch((why: RemoteStop) => {
    if (finished || stopping) return;
    if ('failure' in why) failure = why.failure;
    else lost = why.lost;
    stop('SIGTERM');
  });

  try {
    workers.start();
    await workers.finished();
    await reported;
    if (!stopping && link) {
      // Everyone here succeeded: say so, and on node 0 keep the store up until every node has.
      await link.finish(stopped).catch((e: Error) => {
        lost ??= `lost the launchers' store at ${s.masterAddr}:${port} (${e.message})`;
      });
    }
  } catch (e) {
    // Not a worker's failure but ours (spawn refused its arguments, say): leave nothing running.
    workers.kill();
    throw e;
  } finally {
    finished = true;
  }

  const ranks = workers.exits;
  const f = failure as LaunchFailure | null;
  const sig = received as NodeJS.Signals | null;
  const ok = f === null && sig === null && lost === null && ranks.every((r) => r.exitCode === 0);
  let message: string | null = null;
  if (!ok) {
    const what = sig ? `received ${sig}` : f ? describeFailure(f, s.nodeRank) : lost;
    if (what) message = `${what}; ${describeStopped(stoppedRanks)}`;
  }
  return {
    ok,
    worldSize: s.worldSize,
    nnodes: s.nnodes,
    nodeRank: s.nodeRank,
    ranks,
    failedRank: f?.rank ?? null,
    failure: f,
    signal: sig,
    stoppedRanks,
    message,
    exitCode: ok ? 0 : sig ? signalStatus(sig) : 1,
  };
}
