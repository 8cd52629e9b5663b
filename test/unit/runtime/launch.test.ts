import { describe, expect, it } from 'vitest';

import { gpuShortfall, parseHostPort, parseLaunchArgs } from '../../../src/cli/commands/launch.js';
import { launch } from '../../../src/runtime/launcher.js';
import { WideepError } from '../../../src/errors.js';
import { isGone } from '../../helpers/processes.js';
import { TEST_TOKEN, fixture, freePort, launcherHooks, recordedPids, runLauncher, tempDir } from './launcher-process.js';

const EXCHANGE = fixture('worker-exchange.mjs');
const HANG = fixture('worker-hang.mjs');

launcherHooks();

describe('wideep launch: workers without a GPU', () => {
  it('warns when some workers get none, unless WIDEEP_DEVICE pins them or no GPU is visible', () => {
    expect(gpuShortfall(4, 1, {})).toBe(
      'wideep launch: 4 workers and 1 GPU visible on this node: workers of local rank 1 and up get no GPU (WIDEEP_DEVICE=N puts every worker on GPU N)',
    );
    expect(gpuShortfall(4, 4, {})).toBeUndefined();
    expect(gpuShortfall(4, 1, { WIDEEP_DEVICE: '0' })).toBeUndefined();
    expect(gpuShortfall(4, 0, {})).toBeUndefined();
  });
});

describe('wideep launch', () => {
  it('runs 4 workers that join, exchange keys and meet at a barrier; output is prefixed per rank', async () => {
    const run = await runLauncher(['--nproc-per-node', '4', EXCHANGE, 'x', '--flag', '-y'], { NCCL_NVLS_ENABLE: '0' }).done;
    expect(run.stderr).not.toContain('wideep launch:');
    expect(run.code).toBe(0);
    const got = JSON.stringify(['hello from 0', 'hello from 1', 'hello from 2', 'hello from 3']);
    for (let r = 0; r < 4; r++) {
      expect(run.stdout).toContain(
        `[rank ${r}] rank=${r} world=4 local=${r}/4 node=0/1 env=${r},${r},0 keep=0 count=4 args=["x","--flag","-y"] got=${got}\n`,
      );
      expect(run.stdout).toContain(`[rank ${r}] partial from ${r}\n`);
      expect(run.stderr).toContain(`[rank ${r}] stderr from ${r}\n`);
    }
    for (const line of run.stdout.trimEnd().split('\n')) expect(line).toMatch(/^\[rank [0-3]\] /);
  });

  it('--json: stdout holds the JSON report alone; worker output goes to stderr', async () => {
    const run = await runLauncher(['--nproc-per-node', '2', '--json', EXCHANGE]).done;
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      ok: true,
      worldSize: 2,
      nodeRank: 0,
      ranks: [0, 1].map((rank) => ({ rank, exitCode: 0, signal: null })),
      failedRank: null,
    });
    expect(run.stderr).toContain('[rank 1] rank=1 world=2');
    expect(run.stderr).toContain('[rank 0] partial from 0\n');
  });

  it('stops everything when a worker fails, names it, and leaves no process behind', async () => {
    const dir = tempDir();
    const run = await runLauncher(['--nproc-per-node', '4', '--json', HANG], { PID_DIR: dir, FAIL_RANK: '2', FAIL_CODE: '3' }).done;
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('wideep launch: rank 2 exited with code 3; stopped ranks 0, 1, 3');
    // Start-up, then the 3 s grace for rank 0's grandchild that ignores SIGTERM.
    expect(run.ms).toBeLessThan(15_000);
    const json = JSON.parse(run.stdout) as { ok: boolean; failedRank: number; ranks: unknown[] };
    expect(json.ok).toBe(false);
    expect(json.failedRank).toBe(2);
    expect(json.ranks[2]).toEqual({ rank: 2, exitCode: 3, signal: null });
    expect(json.ranks[0]).toEqual({ rank: 0, exitCode: null, signal: 'SIGTERM' });
    const pids = recordedPids(dir);
    expect([...pids.keys()].sort()).toEqual(['grandchild.pid', 'worker-0.pid', 'worker-1.pid', 'worker-2.pid', 'worker-3.pid']);
    for (const [file, pid] of pids) expect(isGone(pid), `${file} (${pid}) is still alive`).toBe(true);
  });

  it('forwards SIGTERM to every worker, then exits non-zero', async () => {
    const dir = tempDir();
    const launcher = runLauncher(['--nproc-per-node', '4', HANG], { PID_DIR: dir });
    await launcher.lines(/^\[rank \d\] ready$/, 4);
    launcher.kill('SIGTERM');
    const run = await launcher.done;
    expect(run.code).toBe(128 + 15);
    expect(run.stderr).toContain('wideep launch: received SIGTERM; stopped ranks 0, 1, 2, 3');
    const pids = recordedPids(dir);
    expect(pids.size).toBe(5);
    for (const [file, pid] of pids) expect(isGone(pid), `${file} (${pid}) is still alive`).toBe(true);
  });

  it('executes a non-JS program directly, with its own arguments, and kills what it spawned', async () => {
    const script = 'echo "rank=$RANK of $WORLD_SIZE local=$LOCAL_RANK"; [ "$RANK" = 1 ] && exit 5; sleep 30';
    const run = await runLauncher(['--nproc-per-node', '2', 'sh', '-c', script]).done;
    expect(run.stdout).toContain('[rank 0] rank=0 of 2 local=0\n');
    expect(run.stdout).toContain('[rank 1] rank=1 of 2 local=1\n');
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('wideep launch: rank 1 exited with code 5; stopped ranks 0');
    expect(run.ms).toBeLessThan(10_000);
  });

  it('exits 2 with the usage on bad flags', async () => {
    const run = await runLauncher(['--nproc-per-node', 'four', EXCHANGE]).done;
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--nproc-per-node: expected an integer');
    expect(run.stderr).toContain("(run 'wideep launch --help' for usage)");
  });
});

describe('wideep launch over two nodes (on loopback)', () => {
  const node = (rank: number, port: number, script: string, env: Record<string, string> = {}) =>
    runLauncher(['--nproc-per-node', '2', '--nnodes', '2', '--node-rank', String(rank), '--dist-init-addr', `127.0.0.1:${port}`, script], {
      WIDEEP_STORE_TOKEN: TEST_TOKEN,
      ...env,
    });

  it('runs one job of 4 ranks through node 0 store', async () => {
    const port = await freePort();
    const [n0, n1] = await Promise.all([node(0, port, EXCHANGE).done, node(1, port, EXCHANGE).done]);
    expect([n0.code, n1.code]).toEqual([0, 0]);
    expect(n0.stdout).toContain('[rank 1] rank=1 world=4 local=1/2 node=0/2');
    expect(n1.stdout).toContain('[rank 3] rank=3 world=4 local=1/2 node=1/2 env=3,1,1');
    expect(n1.stdout).toContain('count=4');
  });

  it('a failure on node 1 stops node 0 as well', async () => {
    const port = await freePort();
    const dir = tempDir();
    const env = { PID_DIR: dir, FAIL_RANK: '3', FAIL_CODE: '3' };
    const [n0, n1] = await Promise.all([node(0, port, HANG, env).done, node(1, port, HANG, env).done]);
    expect(n1.code).toBe(1);
    expect(n1.stderr).toContain('wideep launch: rank 3 exited with code 3; stopped ranks 2');
    expect(n0.code).toBe(1);
    expect(n0.stderr).toContain('wideep launch: rank 3 on node 1 exited with code 3; stopped ranks 0, 1');
    const pids = recordedPids(dir);
    expect(pids.size).toBe(5);
    for (const [file, pid] of pids) expect(isGone(pid), `${file} (${pid}) is still alive`).toBe(true);
  });
});

describe('launch() and its arguments', () => {
  it('reports a program that cannot start', async () => {
    const out: string[] = [];
    const result = await launch({
      script: '/nonexistent/wideep-program',
      nprocPerNode: 2,
      forwardSignals: false,
      stdout: (t) => out.push(t),
      stderr: (t) => out.push(t),
    });
    expect(result.ok).toBe(false);
    expect(result.exitCode).toBe(1);
    expect(result.failedRank).toBe(0);
    expect(result.message).toMatch(/^rank 0 could not start \(spawn \/nonexistent\/wideep-program ENOENT\); no other rank/);
    expect(result.ranks.map((r) => r.error !== undefined)).toEqual([true, true]);
  });

  it('splits launcher flags from the script and its arguments', () => {
    expect(parseLaunchArgs(['--nproc-per-node', '8', 'train.mjs', '--nproc-per-node', '1', '--lr=3'])).toEqual({
      options: {
        script: 'train.mjs',
        args: ['--nproc-per-node', '1', '--lr=3'],
        nprocPerNode: 8,
        nnodes: 1,
        nodeRank: 0,
        masterAddr: undefined,
        masterPort: undefined,
      },
      json: false,
    });
    const multi = parseLaunchArgs(['--nproc-per-node=4', '--nnodes', '2', '--node-rank', '1', '--dist-init-addr', 'head:7000', '--json', '--', '-weird']);
    expect(multi.options).toMatchObject({ script: '-weird', nprocPerNode: 4, nnodes: 2, nodeRank: 1, masterAddr: 'head', masterPort: 7000 });
    expect(multi.json).toBe(true);
    expect(parseLaunchArgs(['--nproc-per-node', '1', '--master-port', '9000', 's.js']).options.masterPort).toBe(9000);
    expect(parseHostPort('[fe80::1]:29500')).toEqual({ host: 'fe80::1', port: 29500 });
    expect(parseHostPort('fe80::1')).toEqual({ host: 'fe80::1', port: undefined });
    expect(parseHostPort('head')).toEqual({ host: 'head', port: undefined });
  });

  it.each([
    [[], '--nproc-per-node is required'],
    [['--nproc-per-node', '0', 's.js'], '--nproc-per-node: expected an integer in [1, 1024], got "0"'],
    [['--nproc-per-node', '2'], 'no script given'],
    [['--nproc-per-node', '2', '--bogus', 's.js'], "Unknown option '--bogus'"],
    [['--nproc-per-node', '2', '--nnodes', '2', 's.js'], '--dist-init-addr is required'],
    [['--nproc-per-node', '2', '--nnodes', '2', '--node-rank', '2', '--dist-init-addr', 'h', 's.js'], '--node-rank 2 must be below --nnodes 2'],
    [['--nproc-per-node', '2', '--dist-init-addr', 'h:1', '--master-port', '2', 's.js'], 'disagree'],
    [['--nproc-per-node', '2', '--dist-init-addr', 'h:http', 's.js'], '--dist-init-addr port'],
    [['--nproc-per-node', '2', '--master-port', '70000', 's.js'], '--master-port'],
  ])('refuses %j with ERR_INVALID_ARG', (argv, message) => {
    let caught: unknown;
    try {
      parseLaunchArgs(argv);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(WideepError);
    expect((caught as WideepError).code).toBe('ERR_INVALID_ARG');
    expect((caught as Error).message).toContain(message);
  });
});
