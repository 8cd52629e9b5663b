/** Runs `wideep launch` as a real process, for the launcher tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterEach, beforeAll } from 'vitest';

export const fixture = (name: string) => fileURLToPath(new URL(`../../fixtures/runtime/${name}`, import.meta.url));
const CLI = fixture('launch-cli.mjs');

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface Launcher {
  pid: number;
  child: ChildProcess;
  done: Promise<Run>;
  /** Resolves once stdout holds `count` lines matching `pattern`. */
  lines(pattern: RegExp, count: number): Promise<void>;
  /** Resolves once stderr holds a line matching `pattern`. */
  errLine(pattern: RegExp): Promise<void>;
  kill(signal: NodeJS.Signals): void;
}

const live = new Set<Launcher>();
const tempDirs: string[] = [];

/** Registers the hooks every launcher test file needs: dist/ present, nothing left behind. */
export function launcherHooks(): void {
  beforeAll(() => {
    if (!existsSync(new URL('../../../dist/cli/commands/launch.js', import.meta.url))) {
      throw new Error('dist/ is missing: run `npx tsc -p tsconfig.build.json` first (npm test does)');
    }
  });
  afterEach(() => {
    for (const l of live) l.kill('SIGKILL');
    live.clear();
    for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
}

/**
 * Runs `wideep launch args...` (through the fixture that wraps the compiled
 * command). With `keepStdout: false` the test reads stdout itself (through
 * `child.stdout`) and `Run.stdout` stays empty.
 */
export function runLauncher(args: string[], env: Record<string, string> = {}, options: { keepStdout?: boolean } = {}): Launcher {
  const t0 = Date.now();
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const watchers: (() => void)[] = [];
  if (options.keepStdout ?? true) {
    child.stdout.on('data', (d) => {
      stdout += d;
      for (const w of watchers) w();
    });
  }
  child.stderr.on('data', (d) => {
    stderr += d;
    for (const w of watchers) w();
  });
  const done = new Promise<Run>((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(launcher);
      // Output already read; a worker that outlived the launcher may hold the pipes open.
      setImmediate(() => resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 }));
    }),
  );
  const waitFor = (what: string, test: () => boolean) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (test()) resolve();
      };
      watchers.push(check);
      check();
      done.then((r) => reject(new Error(`launcher ended before ${what}:\n${r.stdout}\n${r.stderr}`)));
    });
  const launcher: Launcher = {
    pid: child.pid!,
    child,
    done,
    lines: (pattern, count) => waitFor(`${count} lines matched ${pattern}`, () => stdout.split('\n').filter((l) => pattern.test(l)).length >= count),
    errLine: (pattern) => waitFor(`stderr matched ${pattern}`, () => stderr.split('\n').some((l) => pattern.test(l))),
    kill: (signal) => child.kill(signal),
  };
  live.add(launcher);
  return launcher;
}

export function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'wideep-launch-'));
  tempDirs.push(d);
  return d;
}

/** The pids the fixtures wrote (workers, and the hang fixture's grandchild). */
export function recordedPids(dir: string): Map<string, number> {
  return new Map(readdirSync(dir).map((f) => [f, Number(readFileSync(join(dir, f), 'utf8'))]));
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** Resident memory of a process in MiB (Linux). */
export function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/** A job secret for the tests (the launcher needs one shared by every node). */
export const TEST_TOKEN = 'test-token-0123456789abcdef';
