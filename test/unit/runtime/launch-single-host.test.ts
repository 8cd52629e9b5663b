/** `wideep launch --nnodes M --single-host`: every node of a job on one machine, with real processes on loopback. */
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { parseLaunchArgs } from '../../../src/cli/commands/launch.js';
import { nodeVisibleDevices } from '../../../src/runtime/launcher.js';
import { expectWideepError } from '../../helpers/expect-error.js';
import { isGone } from '../../helpers/processes.js';
import { fixture, launcherHooks, recordedPids, runLauncher, tempDir } from './launcher-process.js';

const EP_NODES = fileURLToPath(new URL('./ep-nodes-worker.mjs', import.meta.url));
const HANG = fixture('worker-hang.mjs');

launcherHooks();

describe('wideep launch --single-host', () => {
  it('runs 2 nodes of 2 workers here, each told its node and given its own GPUs; EP takes the hierarchical path', async () => {
    const run = await runLauncher(['--nproc-per-node', '2', '--nnodes', '2', '--single-host', EP_NODES], { CUDA_VISIBLE_DEVICES: '4,5,6,7' }).done;
    expect(run.code, run.stderr).toBe(0);
    for (const [rank, node, local, gpus] of [[0, 0, 0, '4,5'], [1, 0, 1, '4,5'], [2, 1, 0, '6,7'], [3, 1, 1, '6,7']] as const) {
      expect(run.stdout).toContain(`[rank ${rank}] rank=${rank} node=${node}/2 local=${local}/2 cvd=${gpus} ranksPerNode=2 same=true\n`);
    }
  });

  it('a failure on "node" 1 stops every node, naming it', async () => {
    const dir = tempDir();
    const run = await runLauncher(['--nproc-per-node', '2', '--nnodes', '2', '--single-host', HANG], { PID_DIR: dir, FAIL_RANK: '3', FAIL_CODE: '3' }).done;
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('wideep launch: rank 3 on node 1 exited with code 3; stopped ranks 0, 1, 2');
    for (const [file, pid] of recordedPids(dir)) expect(isGone(pid), `${file} (${pid}) is still alive`).toBe(true);
  });

  it('splits the visible GPUs into one run per node, unless WIDEEP_DEVICE pins every worker', () => {
    expect([0, 1].map((n) => nodeVisibleDevices({}, n, 2))).toEqual([{ CUDA_VISIBLE_DEVICES: '0,1' }, { CUDA_VISIBLE_DEVICES: '2,3' }]);
    expect(nodeVisibleDevices({ CUDA_VISIBLE_DEVICES: 'GPU-a, GPU-b,GPU-c' }, 1, 2)).toEqual({ CUDA_VISIBLE_DEVICES: 'GPU-c' });
    expect(nodeVisibleDevices({ WIDEEP_DEVICE: '0' }, 1, 2)).toEqual({});
  });

  it('parses, and refuses what has no meaning with it', async () => {
    expect(parseLaunchArgs(['--nproc-per-node', '4', '--nnodes', '2', '--single-host', 's.js']).options).toMatchObject({ nnodes: 2, nodeRank: 0, singleHost: true });
    for (const flags of [['--node-rank', '1'], ['--dist-init-addr', 'h:1']]) {
      await expectWideepError(() => parseLaunchArgs(['--nproc-per-node', '2', '--nnodes', '2', '--single-host', ...flags, 's.js']), 'ERR_INVALID_ARG', `${flags[0]} has no meaning with --single-host`);
    }
    await expectWideepError(() => parseLaunchArgs(['--nproc-per-node', '2', '--nnodes', '2', 's.js']), 'ERR_INVALID_ARG', '(or --single-host, to run every node here)');
  });
});
