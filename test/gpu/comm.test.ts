/**
 * The NCCL Communicator on real GPUs: every collective and dtype against a CPU
 * expectation (2, 4 and 8 ranks where the GPUs exist, through `wideep launch`), and a dead peer that
 * must turn into ERR_TIMEOUT or NCCL_* on the survivors instead of a hang.
 * Workers import the compiled library from dist/ (npx tsc -p tsconfig.build.json).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { afterEach, beforeAll, describe, expect, it } from 'vitest';

import { TcpStoreServer } from '../../src/runtime/store/index.js';
import { isGone } from '../helpers/processes.js';
import { RANK_COUNTS, gpus, skipReason } from './gpu-env.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = fileURLToPath(new URL('../../bin/wideep.js', import.meta.url));
const worker = (name: string) => fileURLToPath(new URL(`./workers/${name}`, import.meta.url));

/** 11 checks per dtype (5 all-reduce ops, all-gather, reduce-scatter, broadcast, ring, all-to-all, all-to-allv) × 5 dtypes, the barrier, the split and its 5 all-reduces. */
const EXPECTED_CHECKS = 11 * 5 + 1 + 1 + 5;
const DEAD_TIMEOUT_MS = 8_000;
/** A survivor must have its error within the timeout plus this margin. */
const DEAD_MARGIN_MS = 12_000;

/** Multicast stays off in everything we start (docs/gpu-runs.md). */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return {
    ...process.env,
    NCCL_NVLS_ENABLE: process.env.NCCL_NVLS_ENABLE ?? '0',
    NVSHMEM_DISABLE_NVLS: process.env.NVSHMEM_DISABLE_NVLS ?? '1',
    TORCH_SYMM_MEM_DISABLE_MULTICAST: process.env.TORCH_SYMM_MEM_DISABLE_MULTICAST ?? '1',
    ...extra,
  };
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

const live = new Set<ChildProcess>();

/** Kills a child's whole process group (children are started detached). */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    // gone
  }
}

afterEach(() => {
  for (const c of live) killGroup(c, 'SIGKILL');
  live.clear();
});

/** Runs a process in its own group; after `timeoutMs` it gets SIGTERM, then SIGKILL 10 s later. */
function run(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): { child: ChildProcess; done: Promise<Exit> } {
  const t0 = Date.now();
  const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(child);
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  let hard: NodeJS.Timeout | undefined;
  const soft = setTimeout(() => {
    timedOut = true;
    killGroup(child, 'SIGTERM');
    hard = setTimeout(() => killGroup(child, 'SIGKILL'), 10_000);
  }, timeoutMs);
  const done = new Promise<Exit>((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(soft);
      clearTimeout(hard);
      live.delete(child);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0, timedOut });
    });
  });
  return { child, done };
}

/** JSON objects printed by the workers, with or without the launcher's `[rank N] ` prefix. */
function jsonLines(stdout: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const raw of stdout.split('\n')) {
    const line = raw.replace(/^\[rank \d+\] /, '').trim();
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a report
    }
  }
  return out;
}

/** Live (non-zombie) processes of process group `pgid`, from /proc. */
function groupMembers(pgid: number): number[] {
  const live: number[] = [];
  for (const d of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'latin1');
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') live.push(Number(d));
    } catch {
      // exited meanwhile
    }
  }
  return live;
}

function tail(text: string, lines = 40): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

describe.skipIf(gpus < 2)(`NCCL Communicator on GPUs (${skipReason(2)})`, () => {
  beforeAll(() => {
    if (!existsSync(new URL('../../dist/index.js', import.meta.url))) {
      throw new Error('dist/ is missing: run `npx tsc -p tsconfig.build.json` first');
    }
  });

  for (const n of RANK_COUNTS) {
    it.skipIf(gpus < n)(`every collective and dtype matches the CPU on ${n} ranks (${skipReason(n)})`, async () => {
      const seed = String(randomInt(1, 2 ** 31));
      const { done } = run(
        process.execPath,
        [CLI, 'launch', '--nproc-per-node', String(n), worker('comm-collectives.mjs')],
        childEnv({ COMM_TEST_SEED: seed, COMM_TEST_DEADLINE_MS: '150000' }),
        200_000,
      );
      const r = await done;
      const reports = jsonLines(r.stdout);
      const context = `seed ${seed}, exit ${r.code ?? r.signal}${r.timedOut ? ' (timed out)' : ''}\n${tail(r.stdout)}\n${tail(r.stderr)}`;
      console.log(`comm collectives n=${n}: ${context.split('\n')[0]}, ${reports.length} reports, ${(r.ms / 1000).toFixed(1)} s`);
      // Printed now, so that a run cut short still shows what failed.
      for (const rep of reports) {
        const failed = Array.isArray(rep.failures) ? (rep.failures as string[]) : [];
        if (failed.length) console.log(`rank ${String(rep.rank)} failures: ${failed.slice(0, 5).join(' | ')}`);
      }
      for (const rep of reports) {
        expect(rep.failures, `rank ${String(rep.rank)}: ${context}`).toEqual([]);
      }
      expect(r.code, context).toBe(0);
      expect(reports.map((rep) => rep.rank).sort(), context).toEqual(Array.from({ length: n }, (_, i) => i));
      for (const rep of reports) expect(rep.checks, `rank ${String(rep.rank)} checks`).toBe(EXPECTED_CHECKS);
    });
  }

  it('a dead peer becomes ERR_TIMEOUT or NCCL_* on every survivor, and nothing is left running', async () => {
    const n = Math.min(gpus, Math.max(...RANK_COUNTS));
    const server = await TcpStoreServer.listen({ host: '127.0.0.1', port: 0 });
    try {
      const procs = Array.from({ length: n }, (_, rank) =>
        run(
          process.execPath,
          [worker('comm-dead-peer.mjs')],
          childEnv({
            RANK: String(rank),
            LOCAL_RANK: String(rank),
            WORLD_SIZE: String(n),
            LOCAL_WORLD_SIZE: String(n),
            GROUP_RANK: '0',
            NODE_RANK: '0',
            GROUP_WORLD_SIZE: '1',
            MASTER_ADDR: '127.0.0.1',
            MASTER_PORT: String(server.port),
            WIDEEP_STORE_HOSTED: '1',
            COMM_TEST_TIMEOUT_MS: String(DEAD_TIMEOUT_MS),
            COMM_TEST_DEAD_RANK: '1',
          }),
          90_000,
        ),
      );
      const exits = await Promise.all(procs.map((p) => p.done));
      const pids = procs.map((p) => p.child.pid!);
      const log = exits.map((e, rank) => `--- rank ${rank}: exit ${e.code ?? e.signal}${e.timedOut ? ' (timed out)' : ''} after ${e.ms} ms\n${tail(e.stdout, 10)}\n${tail(e.stderr, 20)}`).join('\n');
      console.log(`dead peer, ${n} ranks:\n${exits.map((e, rank) => `rank ${rank}: ${e.stdout.trim().split('\n').pop()}`).join('\n')}`);

      expect(exits[1]!.timedOut, log).toBe(false);
      expect(exits[1]!.code === 7 || exits[1]!.signal !== null, `rank 1 should have exited with 7:\n${log}`).toBe(true);
      for (let rank = 0; rank < n; rank++) {
        if (rank === 1) continue;
        const e = exits[rank]!;
        const rep = jsonLines(e.stdout).find((o) => o.rank === rank) as { code?: string; ms?: number } | undefined;
        expect(e.timedOut, `rank ${rank} timed out:\n${log}`).toBe(false);
        expect(rep, `rank ${rank} printed no report:\n${log}`).toBeDefined();
        expect(rep!.code === 'ERR_TIMEOUT' || String(rep!.code).startsWith('NCCL_'), `rank ${rank} code ${rep!.code}:\n${log}`).toBe(true);
        expect(rep!.ms!, `rank ${rank} took ${rep!.ms} ms:\n${log}`).toBeLessThanOrEqual(DEAD_TIMEOUT_MS + DEAD_MARGIN_MS);
        expect(e.code, `rank ${rank}:\n${log}`).toBe(0);
      }
      // Every process (and its group) is gone by itself: nothing had to be killed.
      for (const pid of pids) expect(isGone(pid), `pid ${pid} is still running`).toBe(true);
      for (const pid of pids) expect(groupMembers(pid), `process group ${pid} still has live members`).toEqual([]);
    } finally {
      await server.close();
    }
  });
});
