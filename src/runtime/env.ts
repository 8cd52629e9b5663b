/**
 * Where this process sits in a job, read from explicit options or from the
 * variables a launcher leaves behind: torchrun / `wideep launch`, Slurm's
 * srun, Open MPI's mpirun; with none of them, a job of one process.
 */
import { WideepError } from '../errors.js';

export type DistEnvSource = 'options' | 'torchrun' | 'slurm' | 'openmpi' | 'single';

export interface DistEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  nodeRank: number;
  nnodes: number;
  masterAddr: string;
  masterPort: number;
  source: DistEnvSource;
}

/** Explicit placement; `rank` and `worldSize` go together, the rest default from them. */
export interface DistEnvOptions {
  rank?: number;
  worldSize?: number;
  localRank?: number;
  localWorldSize?: number;
  nodeRank?: number;
  nnodes?: number;
  masterAddr?: string;
  masterPort?: number;
}

export const DEFAULT_MASTER_ADDR = '127.0.0.1';
export const DEFAULT_MASTER_PORT = 29500;

type Env = Readonly<Record<string, string | undefined>>;

function bad(name: string, value: unknown, expected: string): WideepError {
  return new WideepError('ERR_INVALID_ARG', `${name}=${JSON.stringify(value)}: expected ${expected}`);
}

/** Reads a variable as a non-negative integer; undefined when unset. */
function envInt(env: Env, name: string, min = 0): number | undefined {
  const raw = env[name];
  if (raw === undefined) return undefined;
  const text = raw.trim();
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) < min) {
    throw bad(name, raw, `an integer >= ${min}`);
  }
  return Number(text);
}

function requireInt(env: Env, name: string, min = 0): number {
  const v = envInt(env, name, min);
  if (v === undefined) throw new WideepError('ERR_INVALID_ARG', `${name} is not set`);
  return v;
}

function optionInt(name: string, v: unknown, min = 0): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw bad(name, v, `an integer >= ${min}`);
  return v;
}

/**
 * Expands the first host of a Slurm hostlist: `gpu[03-06,09]` → `gpu03`,
 * `a1,b2` → `a1`, `rack[1-2]-n[01-04]` → `rack1-n01`.
 */
export function firstSlurmHost(nodelist: string): string {
  let depth = 0;
  let end = nodelist.length;
  for (let i = 0; i < nodelist.length; i++) {
    const c = nodelist[i];
    if (c === '[') depth++;
    else if (c === ']') depth--;
    else if (c === ',' && depth === 0) {
      end = i;
      break;
    }
  }
  const first = nodelist.slice(0, end).trim();
  const host = first.replace(/\[([^\]]*)\]/g, (_m, inner: string) => inner.split(',')[0]!.split('-')[0]!);
  if (!host || /[[\],]/.test(host)) throw bad('SLURM_JOB_NODELIST', nodelist, 'a Slurm hostlist such as gpu[03-06,09]');
  return host;
}

/**
 * Tasks on node `nodeRank` from a Slurm tasks-per-node list: `4(x2),3` means
 * two nodes with 4 tasks, then one with 3.
 */
export function slurmTasksOnNode(name: string, spec: string, nodeRank: number): number {
  const counts: number[] = [];
  for (const part of spec.split(',')) {
    const m = /^\s*(\d+)(?:\(x(\d+)\))?\s*$/.exec(part);
    if (!m) throw bad(name, spec, 'a list such as 4(x2),3');
    const repeat = m[2] === undefined ? 1 : Number(m[2]);
    for (let i = 0; i < repeat && counts.length <= nodeRank; i++) counts.push(Number(m[1]));
    if (counts.length > nodeRank) break;
  }
  const n = counts[nodeRank];
  if (n === undefined || n < 1) throw bad(name, spec, `a task count for node ${nodeRank}`);
  return n;
}

type Counts = Omit<DistEnv, 'masterAddr' | 'masterPort' | 'source'>;

/** What one source says; the master's address is settled afterwards. */
interface Placement extends Counts {
  /** Where a missing master address may come from, for the error message. */
  masterHint: string;
  masterAddr?: string;
  /** The variable behind each count, for messages. */
  names: Record<keyof Counts, string>;
}

function fromOptions(o: DistEnvOptions): Placement {
  if (o.rank === undefined || o.worldSize === undefined) {
    throw new WideepError('ERR_INVALID_ARG', 'options.rank and options.worldSize must be given together');
  }
  const rank = optionInt('options.rank', o.rank)!;
  const worldSize = optionInt('options.worldSize', o.worldSize, 1)!;
  const localWorldSize = optionInt('options.localWorldSize', o.localWorldSize, 1) ?? worldSize;
  return {
    rank,
    worldSize,
    localWorldSize,
    localRank: optionInt('options.localRank', o.localRank) ?? rank % localWorldSize,
    nodeRank: optionInt('options.nodeRank', o.nodeRank) ?? Math.floor(rank / localWorldSize),
    nnodes: optionInt('options.nnodes', o.nnodes, 1) ?? Math.ceil(worldSize / localWorldSize),
    masterHint: 'options.masterAddr or MASTER_ADDR',
    names: {
      rank: 'options.rank',
      worldSize: 'options.worldSize',
      localRank: 'options.localRank',
      localWorldSize: 'options.localWorldSize',
      nodeRank: 'options.nodeRank',
      nnodes: 'options.nnodes',
    },
  };
}

function fromTorchrun(env: Env): Placement {
  if (env.RANK === undefined) throw new WideepError('ERR_INVALID_ARG', `WORLD_SIZE=${JSON.stringify(env.WORLD_SIZE)} is set but RANK is not`);
  if (env.WORLD_SIZE === undefined) throw new WideepError('ERR_INVALID_ARG', `RANK=${JSON.stringify(env.RANK)} is set but WORLD_SIZE is not`);
  const rank = requireInt(env, 'RANK');
  const worldSize = requireInt(env, 'WORLD_SIZE', 1);
  const localWorldSize = envInt(env, 'LOCAL_WORLD_SIZE', 1) ?? worldSize;
  const groupRank = envInt(env, 'GROUP_RANK');
  const nodeRankVar = envInt(env, 'NODE_RANK');
  if (groupRank !== undefined && nodeRankVar !== undefined && groupRank !== nodeRankVar) {
    throw new WideepError('ERR_INVALID_ARG', `GROUP_RANK=${groupRank} and NODE_RANK=${nodeRankVar} disagree`);
  }
  return {
    rank,
    worldSize,
    localWorldSize,
    localRank: envInt(env, 'LOCAL_RANK') ?? rank % localWorldSize,
    nodeRank: groupRank ?? nodeRankVar ?? Math.floor(rank / localWorldSize),
    nnodes: envInt(env, 'GROUP_WORLD_SIZE', 1) ?? Math.ceil(worldSize / localWorldSize),
    masterHint: 'MASTER_ADDR',
    names: {
      rank: 'RANK',
      worldSize: 'WORLD_SIZE',
      localRank: 'LOCAL_RANK',
      localWorldSize: 'LOCAL_WORLD_SIZE',
      nodeRank: groupRank !== undefined ? 'GROUP_RANK' : 'NODE_RANK',
      nnodes: 'GROUP_WORLD_SIZE',
    },
  };
}

function fromSlurm(env: Env): Placement {
  const rank = requireInt(env, 'SLURM_PROCID');
  const worldSize = requireInt(env, 'SLURM_NTASKS', 1);
  const nnodes = envInt(env, 'SLURM_NNODES', 1) ?? envInt(env, 'SLURM_JOB_NUM_NODES', 1) ?? 1;
  const nodeId = envInt(env, 'SLURM_NODEID');
  let localWorldSize = envInt(env, 'SLURM_NTASKS_PER_NODE', 1);
  let lwsName = 'SLURM_NTASKS_PER_NODE';
  if (localWorldSize === undefined) {
    for (const name of ['SLURM_STEP_TASKS_PER_NODE', 'SLURM_TASKS_PER_NODE']) {
      const spec = env[name];
      if (spec !== undefined) {
        localWorldSize = slurmTasksOnNode(name, spec, nodeId ?? 0);
        lwsName = name;
        break;
      }
    }
  }
  localWorldSize ??= Math.ceil(worldSize / nnodes);
  const nodelist = env.SLURM_STEP_NODELIST ?? env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST;
  return {
    rank,
    worldSize,
    localWorldSize,
    localRank: envInt(env, 'SLURM_LOCALID') ?? rank % localWorldSize,
    nodeRank: nodeId ?? Math.floor(rank / localWorldSize),
    nnodes,
    masterAddr: nodelist === undefined ? undefined : firstSlurmHost(nodelist),
    masterHint: 'MASTER_ADDR or SLURM_JOB_NODELIST',
    names: {
      rank: 'SLURM_PROCID',
      worldSize: 'SLURM_NTASKS',
      localRank: 'SLURM_LOCALID',
      localWorldSize: lwsName,
      nodeRank: 'SLURM_NODEID',
      nnodes: 'SLURM_NNODES',
    },
  };
}

function fromOpenMpi(env: Env): Placement {
  const rank = requireInt(env, 'OMPI_COMM_WORLD_RANK');
  const worldSize = requireInt(env, 'OMPI_COMM_WORLD_SIZE', 1);
  const localWorldSize = envInt(env, 'OMPI_COMM_WORLD_LOCAL_SIZE', 1) ?? worldSize;
  return {
    rank,
    worldSize,
    localWorldSize,
    localRank: envInt(env, 'OMPI_COMM_WORLD_LOCAL_RANK') ?? rank % localWorldSize,
    // Open MPI has no node index; mpirun's default by-slot mapping fills nodes in order.
    nodeRank: Math.floor(rank / localWorldSize),
    nnodes: Math.ceil(worldSize / localWorldSize),
    masterHint: 'MASTER_ADDR',
    names: {
      rank: 'OMPI_COMM_WORLD_RANK',
      worldSize: 'OMPI_COMM_WORLD_SIZE',
      localRank: 'OMPI_COMM_WORLD_LOCAL_RANK',
      localWorldSize: 'OMPI_COMM_WORLD_LOCAL_SIZE',
      nodeRank: 'OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_LOCAL_SIZE',
      nnodes: 'OMPI_COMM_WORLD_SIZE / OMPI_COMM_WORLD_LOCAL_SIZE',
    },
  };
}

function below(p: Placement, a: keyof Counts, b: keyof Counts): void {
  if (p[a] >= p[b]) {
    throw new WideepError('ERR_INVALID_ARG', `${p.names[a]}=${p[a]} must be below ${p.names[b]}=${p[b]}`);
  }
}

/**
 * Detects this process's place in the job. Sources, first match wins:
 * explicit options (`rank` + `worldSize`); torchrun / wideep launch (`RANK`,
 * `WORLD_SIZE`, ...); Slurm (`SLURM_PROCID`, ...); Open MPI
 * (`OMPI_COMM_WORLD_RANK`, ...); otherwise rank 0 of 1. `masterAddr` and
 * `masterPort` come from options, then `MASTER_ADDR`/`MASTER_PORT`, then the
 * source (Slurm's first node) and finally 127.0.0.1:29500. Any inconsistency
 * is ERR_INVALID_ARG naming the variable and its value.
 */
export function detectDistEnv(options: DistEnvOptions = {}, env: Env = process.env): DistEnv {
  let source: DistEnvSource;
  let p: Placement;
  if (options.rank !== undefined || options.worldSize !== undefined) {
    source = 'options';
    p = fromOptions(options);
  } else if (env.RANK !== undefined || env.WORLD_SIZE !== undefined) {
    source = 'torchrun';
    p = fromTorchrun(env);
  } else if (env.SLURM_PROCID !== undefined) {
    source = 'slurm';
    p = fromSlurm(env);
  } else if (env.OMPI_COMM_WORLD_RANK !== undefined) {
    source = 'openmpi';
    p = fromOpenMpi(env);
  } else {
    source = 'single';
    p = fromOptions({ ...options, rank: 0, worldSize: 1 });
  }
  below(p, 'rank', 'worldSize');
  below(p, 'localRank', 'localWorldSize');
  below(p, 'nodeRank', 'nnodes');
  if (p.localWorldSize > p.worldSize) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `${p.names.localWorldSize}=${p.localWorldSize} must not exceed ${p.names.worldSize}=${p.worldSize}`,
    );
  }

  let masterAddr: string | undefined;
  if (options.masterAddr !== undefined) {
    if (typeof options.masterAddr !== 'string' || options.masterAddr.trim() === '') {
      throw bad('options.masterAddr', options.masterAddr, 'a host name or address');
    }
    masterAddr = options.masterAddr.trim();
  } else if (env.MASTER_ADDR !== undefined) {
    if (env.MASTER_ADDR.trim() === '') throw bad('MASTER_ADDR', env.MASTER_ADDR, 'a host name or address');
    masterAddr = env.MASTER_ADDR.trim();
  } else {
    masterAddr = p.masterAddr;
  }
  if (masterAddr === undefined) {
    if (p.nnodes > 1) {
      throw new WideepError('ERR_INVALID_ARG', `a job over ${p.nnodes} nodes needs the master's address: set ${p.masterHint}`);
    }
    masterAddr = DEFAULT_MASTER_ADDR;
  }
  const masterPort =
    optionInt('options.masterPort', options.masterPort, 1) ?? envInt(env, 'MASTER_PORT', 1) ?? DEFAULT_MASTER_PORT;
  if (masterPort > 65535) {
    throw bad(options.masterPort !== undefined ? 'options.masterPort' : 'MASTER_PORT', masterPort, 'a port in [1, 65535]');
  }

  const { rank, worldSize, localRank, localWorldSize, nodeRank, nnodes } = p;
  return { rank, worldSize, localRank, localWorldSize, nodeRank, nnodes, masterAddr, masterPort, source };
}
