/**
 * This launcher's workers (its node's, or every node's with singleHost): one
 * process per rank, each leading its own process group, with its output
 * forwarded and a pipe that tells it when the launcher dies
 * (launcher-watch.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { Readable } from 'node:stream';

import { launcherWatchEnv } from './launcher-watch.js';
import type { OutputForwarder } from './output.js';
import { signalGroup, sweep } from './process-tree.js';

/** How long the launcher waits for worker pipes to close once every process is gone. */
const PIPE_CLOSE_MS = 1_000;

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

export interface WorkerSetOptions {
  script: string;
  args: readonly string[];
  /** The ranks to start here, each with its local rank on its node. */
  ranks: readonly { rank: number; localRank: number }[];
  /** The environment of local rank `localRank` (rank variables included). */
  envFor(localRank: number, rank: number): Record<string, string | undefined>;
  stdout: OutputForwarder;
  stderr: OutputForwarder;
  graceMs: number;
  /** Called once per rank when it has exited (or could not start). */
  onExit(exit: RankExit): void;
}

interface Worker {
  child: ChildProcess;
  exit: RankExit;
  exited: Promise<void>;
  closed: Promise<void>;
}

function workerCommand(script: string, args: readonly string[]): [string, string[]] {
  if (/\.[cm]?js$/i.test(script)) return [process.execPath, [script, ...args]];
  // A file here runs as a path; a bare name is looked up in PATH.
  return [existsSync(script) ? resolvePath(script) : script, [...args]];
}

export class WorkerSet {
  readonly #o: WorkerSetOptions;
  readonly #workers: Worker[] = [];
  #termSentAt: number | undefined;
  #killTimer: NodeJS.Timeout | undefined;

  constructor(o: WorkerSetOptions) {
    this.#o = o;
  }

  get exits(): RankExit[] {
    return this.#workers.map((w) => w.exit);
  }

  /** Ranks still running. */
  get running(): number[] {
    return this.exits.filter((e) => e.pid !== undefined && e.exitCode === null && e.signal === null && e.error === undefined).map((e) => e.rank);
  }

  start(): void {
    const { stdout, stderr } = this.#o;
    const [command, args] = workerCommand(this.#o.script, this.#o.args);
    for (const { rank, localRank } of this.#o.ranks) {
      const base = this.#o.envFor(localRank, rank);
      const env = { ...base, ...launcherWatchEnv(base) };
      // fd 3: the launcher's end stays open for as long as the launcher lives; nothing is
      // written to it, and it is read only to see it end with the worker (so that 'close' comes).
      const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe', 'pipe'], detached: true });
      (child.stdio[3] as Readable | null)?.on('error', () => {}).resume();
      const exit: RankExit = { rank, localRank, pid: child.pid, exitCode: null, signal: null };
      const prefix = `[rank ${rank}] `;
      stdout.pipe(child.stdout!, prefix);
      stderr.pipe(child.stderr!, prefix);
      const exited = new Promise<void>((resolve) => {
        child.once('exit', (code, signal) => {
          exit.exitCode = code;
          exit.signal = signal;
          resolve();
          this.#o.onExit(exit);
        });
        child.once('error', (e) => {
          if (child.pid !== undefined) return; // a failed kill() and the like; 'exit' still comes
          exit.error = e.message;
          resolve();
          this.#o.onExit(exit);
        });
      });
      const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
      this.#workers.push({ child, exit, exited, closed });
    }
  }

  /** `signal` to every worker's group now, SIGKILL after the grace. Once. */
  stop(signal: NodeJS.Signals): void {
    if (this.#termSentAt !== undefined) return;
    this.#termSentAt = Date.now();
    for (const w of this.#workers) signalGroup(w.exit.pid, signal);
    this.#killTimer = setTimeout(() => this.kill(), this.#o.graceMs);
  }

  /** SIGKILL to every worker's group now. */
  kill(): void {
    for (const w of this.#workers) signalGroup(w.exit.pid, 'SIGKILL');
  }

  /**
   * Resolves once every worker has exited, what they left in their groups is
   * gone (sweep), and their pipes are closed.
   */
  async finished(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.exited));
    clearTimeout(this.#killTimer);
    await sweep(
      this.#workers.map((w) => w.exit.pid),
      this.#termSentAt,
      this.#o.graceMs,
    );
    let pipeTimer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.#workers.map((w) => w.closed)),
      new Promise((resolve) => (pipeTimer = setTimeout(resolve, PIPE_CLOSE_MS))),
    ]);
    clearTimeout(pipeTimer);
    for (const w of this.#workers) for (const s of w.child.stdio) s?.destroy();
  }
}
