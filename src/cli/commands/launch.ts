import { parseArgs } from 'node:util';

import { deviceCount } from '../../cuda/device.js';
import { launch, type LaunchOptions } from '../../runtime/launcher.js';
import { DEVICE_VAR } from '../../runtime/process-group.js';
import { WideepError } from '../../errors.js';
import { processIo, toJson, type CliCommand } from '../command.js';

const USAGE = `usage: wideep launch --nproc-per-node N [--nnodes M --node-rank i --dist-init-addr host:port]
                     [--nnodes M --single-host] [--master-port P] [--rdzv-timeout S] [--rdzv-token T]
                     [--json] script [args...]

Starts N workers of script on this node, one per GPU. A .js/.mjs/.cjs script
runs under this Node; anything else is executed directly. Arguments after the
script are the script's.

Every worker gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK,
NODE_RANK, MASTER_ADDR and MASTER_PORT on top of this environment; its output
lines are prefixed with [rank N]. The launcher of node 0 hosts the job's store
(a free port on 127.0.0.1 for one node, --dist-init-addr for several; it binds
that address only) and serves only holders of the job's secret, which the
workers get as WIDEEP_STORE_TOKEN. A job over several nodes needs the same
secret on every node: WIDEEP_STORE_TOKEN (better than --rdzv-token, which other
users of the machine can see in ps), e.g. from \`openssl rand -hex 32\`. The
launchers wait up to --rdzv-timeout for every node to join before starting any
worker.

When a worker fails, the launcher stops all the others (SIGTERM, then SIGKILL
after 3 s), on every node, names the failed rank and exits 1. SIGINT, SIGTERM
and SIGHUP end the launcher in every phase; while workers run, they are
forwarded to them. If the launcher is killed, its Node workers notice and end
with everything they spawned. A slow reader of the output slows the workers
down rather than filling memory; a closed output (| head) stops the job with
status 141, as SIGPIPE would.

A worker uses the GPU of its local rank. With more workers than GPUs, the
others get none (a warning says so); WIDEEP_DEVICE=N puts every worker on GPU
N instead (EP buffers work so, NCCL does not).

options:
  --nproc-per-node N       workers on this node (required)
  --nnodes M               nodes in the job (default 1)
  --node-rank i            this node's index, 0..M-1 (default 0)
  --dist-init-addr h[:p]   node 0's address and store port (required with --nnodes > 1)
  --single-host            run all M nodes here, for testing multi-node code on one machine:
                           node n gets the n-th run of N GPUs (of CUDA_VISIBLE_DEVICES, if
                           set) as its CUDA_VISIBLE_DEVICES, and its place in NODE_RANK,
                           GROUP_RANK and LOCAL_RANK, as on a real node
  --master-port P          the store's port (default: free port for one node, else 29500)
  --rdzv-timeout S         seconds to wait for node 0's store and for every node to join (default 300)
  --rdzv-token T           the job's secret, 16 characters or more (default: WIDEEP_STORE_TOKEN;
                           with one node and neither, a fresh one)
  --json                   after the run, print {ok, worldSize, nodeRank, ranks, failedRank} on
                           stdout, alone: worker output goes to stderr`;

/** Launcher flags that take a value (so the value is not mistaken for the script). */
const VALUE_FLAGS = new Set(['--nproc-per-node', '--nnodes', '--node-rank', '--dist-init-addr', '--master-port', '--rdzv-timeout', '--rdzv-token']);

/** Longest --rdzv-timeout: what a timer can hold. */
const MAX_RDZV_TIMEOUT_S = Math.floor((2 ** 31 - 1) / 1000);

function usageError(message: string): WideepError {
  return new WideepError('ERR_INVALID_ARG', `launch: ${message}`);
}

function flagInt(flag: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw usageError(`${flag}: expected an integer in [${min}, ${max}], got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/** Splits `host:port`, `[v6]:port`, `host` or a bare IPv6 address. */
export function parseHostPort(text: string): { host: string; port: number | undefined } {
  // '[v6]:port', 'host:port'; a bare IPv6 address (several colons) has no port.
  const m = /^\[([^\]]+)\](?::(.*))?$/.exec(text) ?? /^([^:]*):([^:]*)$/.exec(text);
  const host = m ? m[1] : text;
  const port = m?.[2];
  if (!host) throw usageError(`--dist-init-addr: expected host[:port], got ${JSON.stringify(text)}`);
  return { host, port: flagInt('--dist-init-addr port', port, 1, 65535) };
}

export interface ParsedLaunchArgs {
  options: LaunchOptions;
  json: boolean;
}

/** Parses `wideep launch` arguments; everything from the script on belongs to the script. */
export function parseLaunchArgs(argv: readonly string[]): ParsedLaunchArgs {
  let i = 0;
  const own: string[] = [];
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') break;
    own.push(a);
    if (VALUE_FLAGS.has(a) && i + 1 < argv.length) own.push(argv[++i]!);
  }
  const script = argv[i];
  let values;
  try {
    ({ values } = parseArgs({
      args: own,
      strict: true,
      options: {
        'nproc-per-node': { type: 'string' },
        nnodes: { type: 'string' },
        'node-rank': { type: 'string' },
        'dist-init-addr': { type: 'string' },
        'master-port': { type: 'string' },
        'rdzv-timeout': { type: 'string' },
        'rdzv-token': { type: 'string' },
        'single-host': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
      },
    }));
  } catch (e) {
    throw usageError((e as Error).message);
  }
  const nproc = flagInt('--nproc-per-node', values['nproc-per-node'], 1, 1024);
  if (nproc === undefined) throw usageError('--nproc-per-node is required');
  const nnodes = flagInt('--nnodes', values.nnodes, 1, 1 << 20) ?? 1;
  const nodeRank = flagInt('--node-rank', values['node-rank'], 0, 1 << 20) ?? 0;
  if (nodeRank >= nnodes) throw usageError(`--node-rank ${nodeRank} must be below --nnodes ${nnodes}`);
  const singleHost = values['single-host'] ?? false;
  for (const flag of ['node-rank', 'dist-init-addr'] as const) {
    if (singleHost && values[flag] !== undefined) throw usageError(`--${flag} has no meaning with --single-host, which runs every node here`);
  }
  const addr = values['dist-init-addr'] === undefined ? undefined : parseHostPort(values['dist-init-addr']);
  if (nnodes > 1 && !addr && !singleHost) throw usageError('--dist-init-addr is required with --nnodes > 1 (or --single-host, to run every node here)');
  const masterPort = flagInt('--master-port', values['master-port'], 1, 65535);
  if (addr?.port !== undefined && masterPort !== undefined && addr.port !== masterPort) {
    throw usageError(`--dist-init-addr port ${addr.port} and --master-port ${masterPort} disagree`);
  }
  const rdzvTimeout = flagInt('--rdzv-timeout', values['rdzv-timeout'], 1, MAX_RDZV_TIMEOUT_S);
  if (script === undefined) throw usageError('no script given');
  return {
    options: {
      script,
      args: argv.slice(i + 1),
      nprocPerNode: nproc,
      nnodes,
      nodeRank,
      ...(singleHost && { singleHost }),
      masterAddr: addr?.host,
      masterPort: addr?.port ?? masterPort,
      rdzvTimeoutMs: rdzvTimeout === undefined ? undefined : rdzvTimeout * 1000,
      token: values['rdzv-token'],
    },
    json: values.json ?? false,
  };
}

/**
 * A warning when some workers will have no GPU of their own (they would fall
 * back to the CPU), unless WIDEEP_DEVICE pins them; none where no GPU is
 * visible (a CPU job).
 */
export function gpuShortfall(nproc: number, gpus: number, env: Readonly<Record<string, string | undefined>>): string | undefined {
  if (gpus === 0 || nproc <= gpus || env[DEVICE_VAR] !== undefined) return undefined;
  return (
    `wideep launch: ${nproc} workers and ${gpus} GPU${gpus === 1 ? '' : 's'} visible on this node: workers of local rank ${gpus} and up ` +
    `get no GPU (${DEVICE_VAR}=N puts every worker on GPU N)`
  );
}

export const command: CliCommand = {
  name: 'launch',
  summary: 'start one worker process per GPU, with rank variables and a shared store',
  usage: USAGE,
  async run(argv, io) {
    const { options, json } = parseLaunchArgs(argv);
    const hosted = options.singleHost ? options.nprocPerNode * options.nnodes! : options.nprocPerNode;
    const warning = gpuShortfall(hosted, deviceCount(), process.env);
    if (warning) io.err(warning);
    // Worker output is written to the process's streams with backpressure; a test's io
    // (callbacks into memory) takes it as text. With --json, stdout is the report's alone.
    const toProcess = io === processIo;
    if (toProcess) {
      // Once stdout or stderr is closed (| head), writing to it must not crash this process:
      // the launcher reports the loss while the job runs; afterwards there is nobody to tell.
      for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
    }
    const workerErr = toProcess ? process.stderr : io.err;
    const workerOut = json ? workerErr : toProcess ? process.stdout : io.out;
    const result = await launch({ ...options, stdout: workerOut, stderr: workerErr });
    if (result.message) io.err(`wideep launch: ${result.message}`);
    if (json) {
      io.out(
        toJson({
          ok: result.ok,
          worldSize: result.worldSize,
          nodeRank: result.nodeRank,
          ranks: result.ranks.map(({ rank, exitCode, signal }) => ({ rank, exitCode, signal })),
          failedRank: result.failedRank,
        }),
      );
    }
    return result.exitCode;
  },
};
