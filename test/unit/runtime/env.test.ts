import { describe, expect, it } from 'vitest';

import { detectDistEnv, firstSlurmHost, slurmTasksOnNode, type DistEnv } from '../../../src/runtime/env.js';
import { WideepError } from '../../../src/errors.js';

/** The ERR_INVALID_ARG message detection throws for `env` (fails if it does not throw). */
function invalid(env: Record<string, string>, options = {}): string {
  try {
    detectDistEnv(options, env);
  } catch (e) {
    expect(e).toBeInstanceOf(WideepError);
    expect((e as WideepError).code).toBe('ERR_INVALID_ARG');
    return (e as Error).message;
  }
  throw new Error(`expected ${JSON.stringify(env)} to be refused`);
}

describe('detectDistEnv', () => {
  it('without any launcher variables is rank 0 of 1 on 127.0.0.1:29500', () => {
    expect(detectDistEnv({}, {})).toEqual<DistEnv>({
      rank: 0,
      worldSize: 1,
      localRank: 0,
      localWorldSize: 1,
      nodeRank: 0,
      nnodes: 1,
      masterAddr: '127.0.0.1',
      masterPort: 29500,
      source: 'single',
    });
    expect(detectDistEnv({}, { PATH: '/bin', MASTER_PORT: '1234' }).masterPort).toBe(1234);
  });

  it('reads torchrun / wideep launch variables', () => {
    const env = {
      RANK: '5',
      WORLD_SIZE: '8',
      LOCAL_RANK: '1',
      LOCAL_WORLD_SIZE: '4',
      GROUP_RANK: '1',
      MASTER_ADDR: 'node0',
      MASTER_PORT: '29600',
    };
    expect(detectDistEnv({}, env)).toEqual<DistEnv>({
      rank: 5,
      worldSize: 8,
      localRank: 1,
      localWorldSize: 4,
      nodeRank: 1,
      nnodes: 2,
      masterAddr: 'node0',
      masterPort: 29600,
      source: 'torchrun',
    });
    expect(detectDistEnv({}, { RANK: '3', WORLD_SIZE: '4', NODE_RANK: '0' })).toMatchObject({
      rank: 3,
      localRank: 3,
      localWorldSize: 4,
      nodeRank: 0,
      nnodes: 1,
      masterAddr: '127.0.0.1',
      masterPort: 29500,
    });
  });

  it('prefers explicit options, then torchrun over Slurm over Open MPI', () => {
    const all = { RANK: '1', WORLD_SIZE: '2', SLURM_PROCID: '3', SLURM_NTASKS: '4', OMPI_COMM_WORLD_RANK: '5', OMPI_COMM_WORLD_SIZE: '6' };
    expect(detectDistEnv({}, all)).toMatchObject({ source: 'torchrun', rank: 1, worldSize: 2 });
    expect(detectDistEnv({ rank: 2, worldSize: 3, masterPort: 4000 }, all)).toMatchObject({
      source: 'options',
      rank: 2,
      worldSize: 3,
      localRank: 2,
      localWorldSize: 3,
      masterPort: 4000,
    });
    const { RANK: _r, WORLD_SIZE: _w, ...noTorch } = all;
    expect(detectDistEnv({}, noTorch)).toMatchObject({ source: 'slurm', rank: 3, worldSize: 4 });
    expect(detectDistEnv({}, { OMPI_COMM_WORLD_RANK: '5', OMPI_COMM_WORLD_SIZE: '6' })).toMatchObject({ source: 'openmpi', rank: 5 });
    expect(detectDistEnv({ masterAddr: 'explicit' }, { RANK: '0', WORLD_SIZE: '1', MASTER_ADDR: 'env' }).masterAddr).toBe('explicit');
  });

  it('reads Slurm, with tasks per node and the master from the node list', () => {
    const env = {
      SLURM_PROCID: '6',
      SLURM_NTASKS: '8',
      SLURM_LOCALID: '2',
      SLURM_NODEID: '1',
      SLURM_NNODES: '2',
      SLURM_TASKS_PER_NODE: '4(x2)',
      SLURM_JOB_NODELIST: 'gpu[03-06,09]',
    };
    expect(detectDistEnv({}, env)).toEqual<DistEnv>({
      rank: 6,
      worldSize: 8,
      localRank: 2,
      localWorldSize: 4,
      nodeRank: 1,
      nnodes: 2,
      masterAddr: 'gpu03',
      masterPort: 29500,
      source: 'slurm',
    });
    expect(detectDistEnv({}, { ...env, SLURM_NTASKS_PER_NODE: '4', SLURM_TASKS_PER_NODE: 'garbage' }).localWorldSize).toBe(4);
    expect(detectDistEnv({}, { ...env, MASTER_ADDR: '10.0.0.1', MASTER_PORT: '3000' })).toMatchObject({
      masterAddr: '10.0.0.1',
      masterPort: 3000,
    });
    // Uneven nodes: 3 tasks on node 0, 2 on node 1.
    expect(
      detectDistEnv({}, { ...env, SLURM_PROCID: '4', SLURM_NTASKS: '5', SLURM_LOCALID: '1', SLURM_TASKS_PER_NODE: '3,2' }).localWorldSize,
    ).toBe(2);
    expect(invalid({ ...env, SLURM_JOB_NODELIST: '' })).toContain('SLURM_JOB_NODELIST');
    const { SLURM_JOB_NODELIST: _n, ...noList } = env;
    expect(invalid(noList)).toContain('MASTER_ADDR or SLURM_JOB_NODELIST');
  });

  it('expands Slurm host lists and task counts', () => {
    expect(firstSlurmHost('gpu[03-06,09]')).toBe('gpu03');
    expect(firstSlurmHost('node7,node8')).toBe('node7');
    expect(firstSlurmHost('a[1-2],b[3]')).toBe('a1');
    expect(firstSlurmHost('rack[1-2]-n[01-04]')).toBe('rack1-n01');
    expect(firstSlurmHost('single')).toBe('single');
    expect(slurmTasksOnNode('X', '4(x2)', 1)).toBe(4);
    expect(slurmTasksOnNode('X', '2(x3),1', 3)).toBe(1);
    expect(() => slurmTasksOnNode('SLURM_TASKS_PER_NODE', '4(x2)', 2)).toThrow(/SLURM_TASKS_PER_NODE="4\(x2\)"/);
    expect(() => slurmTasksOnNode('SLURM_TASKS_PER_NODE', '4x2', 0)).toThrow(/4x2/);
  });

  it('reads Open MPI', () => {
    const env = { OMPI_COMM_WORLD_RANK: '5', OMPI_COMM_WORLD_SIZE: '8', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '4' };
    expect(detectDistEnv({}, { ...env, MASTER_ADDR: 'head' })).toEqual<DistEnv>({
      rank: 5,
      worldSize: 8,
      localRank: 1,
      localWorldSize: 4,
      nodeRank: 1,
      nnodes: 2,
      masterAddr: 'head',
      masterPort: 29500,
      source: 'openmpi',
    });
    // Several nodes and no MASTER_ADDR: nobody can guess it.
    expect(invalid(env)).toContain('MASTER_ADDR');
    expect(detectDistEnv({}, { ...env, OMPI_COMM_WORLD_LOCAL_SIZE: '8' }).masterAddr).toBe('127.0.0.1');
  });

  it('names the variable and the value of every inconsistency', () => {
    expect(invalid({ RANK: '4', WORLD_SIZE: '4' })).toBe('RANK=4 must be below WORLD_SIZE=4');
    expect(invalid({ RANK: 'one', WORLD_SIZE: '4' })).toContain('RANK="one"');
    expect(invalid({ RANK: '1.5', WORLD_SIZE: '4' })).toContain('RANK="1.5"');
    expect(invalid({ RANK: '-1', WORLD_SIZE: '4' })).toContain('RANK="-1"');
    expect(invalid({ RANK: '0', WORLD_SIZE: '0' })).toContain('WORLD_SIZE="0"');
    expect(invalid({ RANK: '0' })).toContain('WORLD_SIZE is not');
    expect(invalid({ WORLD_SIZE: '2' })).toContain('RANK is not');
    expect(invalid({ RANK: '0', WORLD_SIZE: '2', LOCAL_RANK: '2', LOCAL_WORLD_SIZE: '2' })).toBe('LOCAL_RANK=2 must be below LOCAL_WORLD_SIZE=2');
    expect(invalid({ RANK: '0', WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '4' })).toContain('LOCAL_WORLD_SIZE=4 must not exceed WORLD_SIZE=2');
    expect(invalid({ RANK: '0', WORLD_SIZE: '4', LOCAL_WORLD_SIZE: '2', GROUP_RANK: '0', NODE_RANK: '1', MASTER_ADDR: 'h' })).toContain(
      'GROUP_RANK=0 and NODE_RANK=1 disagree',
    );
    expect(invalid({ RANK: '0', WORLD_SIZE: '1', MASTER_PORT: '70000' })).toContain('MASTER_PORT=70000');
    expect(invalid({ RANK: '0', WORLD_SIZE: '1', MASTER_PORT: 'http' })).toContain('MASTER_PORT="http"');
    expect(invalid({ RANK: '0', WORLD_SIZE: '1', MASTER_ADDR: ' ' })).toContain('MASTER_ADDR');
    expect(invalid({ SLURM_PROCID: '3', SLURM_NTASKS: '2' })).toBe('SLURM_PROCID=3 must be below SLURM_NTASKS=2');
    expect(invalid({ SLURM_PROCID: '0' })).toContain('SLURM_NTASKS is not set');
    expect(invalid({ SLURM_PROCID: '0', SLURM_NTASKS: '2', SLURM_NODEID: '2', SLURM_NNODES: '2', MASTER_ADDR: 'h' })).toBe(
      'SLURM_NODEID=2 must be below SLURM_NNODES=2',
    );
    expect(invalid({ OMPI_COMM_WORLD_RANK: '2', OMPI_COMM_WORLD_SIZE: '2' })).toBe('OMPI_COMM_WORLD_RANK=2 must be below OMPI_COMM_WORLD_SIZE=2');
    expect(invalid({}, { rank: 1 })).toContain('options.rank and options.worldSize');
    expect(invalid({}, { rank: 2, worldSize: 2 })).toBe('options.rank=2 must be below options.worldSize=2');
    expect(invalid({}, { rank: 0.5, worldSize: 2 })).toContain('options.rank=0.5');
    expect(invalid({}, { rank: 0, worldSize: 2, masterPort: 0 })).toContain('options.masterPort=0');
  });
});
