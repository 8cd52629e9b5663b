/**
 * The signals a launcher takes over (SIGINT, SIGTERM, SIGHUP), for every
 * phase of its life: before the workers exist they abort whatever it waits
 * for (node 0's store, the other nodes), while they run they go to the
 * workers, and afterwards they end the wait for the other nodes.
 */
export const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export class LauncherSignals {
  /** The first signal received, if any. */
  received: NodeJS.Signals | null = null;
  readonly #abort = new AbortController();
  #handler: ((signal: NodeJS.Signals, repeated: boolean) => void) | undefined;
  readonly #listener = (signal: NodeJS.Signals): void => {
    const repeated = this.received !== null;
    this.received ??= signal;
    this.#abort.abort();
    this.#handler?.(signal, repeated);
  };

  /** With `enabled` false, the process's signals are left to its own handlers and nothing is ever received. */
  constructor(private readonly enabled: boolean) {
    if (enabled) for (const s of FORWARDED_SIGNALS) process.on(s, this.#listener);
  }

  /** Aborted at the first signal. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** What to do with each signal from now on (`repeated`: a second Ctrl-C, say). */
  handle(handler: (signal: NodeJS.Signals, repeated: boolean) => void): void {
    this.#handler = handler;
  }

  dispose(): void {
    if (this.enabled) for (const s of FORWARDED_SIGNALS) process.off(s, this.#listener);
  }
}
