import { WideepError } from '../errors.js';

/** One `wideep <name>` subcommand. `run` returns the process exit code. */
export interface CliCommand {
  name: string;
  summary: string;
  usage: string;
  run(argv: string[], io: CliIo): Promise<number>;
}

/** Where commands write; tests pass their own. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /**
   * Shows a transient status line of a long command, replacing the last one
   * ('' erases it). Absent unless stderr is a terminal, so piped output
   * carries none; commands give none in --json mode.
   */
  progress?(text: string): void;
}

/** What `streamIo` needs of a stream: `process.stdout` and `process.stderr` qualify. */
export interface TextStream {
  write(text: string): unknown;
  on?(event: 'error', listener: (e: NodeJS.ErrnoException) => void): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * A writer to `stream` that drops its output once the reader has gone
 * (`wideep plan --json | head` ends with EPIPE), instead of crashing on the
 * stream's error event; any other write error still surfaces.
 */
function writerTo(stream: TextStream): (text: string) => void {
  let gone = false;
  stream.on?.('error', (e) => {
    if (e.code !== 'EPIPE') throw e;
    gone = true;
  });
  return (text) => {
    if (!gone) stream.write(text);
  };
}

/**
 * A CliIo over two streams. On a terminal stderr the progress line is written
 * without a newline, cut to the terminal's width so that `\r` can overwrite it,
 * and erased before any other output.
 */
export function streamIo(stdout: TextStream, stderr: TextStream): CliIo {
  const toOut = writerTo(stdout);
  const toErr = writerTo(stderr);
  let shown = false;
  const erase = (): void => {
    if (shown) toErr('\r\x1b[K');
    shown = false;
  };
  const line = (t: string): string => (t.endsWith('\n') ? t : t + '\n');
  const io: CliIo = {
    out(t) {
      erase();
      toOut(line(t));
    },
    err(t) {
      erase();
      toErr(line(t));
    },
  };
  if (stderr.isTTY) {
    io.progress = (t) => {
      erase();
      if (t === '') return;
      // A terminal whose size is unknown reports 0 columns.
      toErr(t.slice(0, (stderr.columns || 80) - 1));
      shown = true;
    };
  }
  return io;
}

export const processIo: CliIo = streamIo(process.stdout, process.stderr);

/**
 * Serialises a result for --json output: indented objects, arrays of plain
 * values on one line without spaces (placement tables stay readable),
 * bigints as strings.
 */
export function toJson(value: unknown, indent = ''): string {
  if (ArrayBuffer.isView(value)) return toJson(Array.from(value as unknown as ArrayLike<unknown>), indent);
  const json = (value as { toJSON?: () => unknown } | null)?.toJSON;
  const v = typeof value === 'bigint' ? value.toString() : typeof json === 'function' ? json.call(value) : value;
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  const inner = indent + '  ';
  if (Array.isArray(v)) {
    // Placement tables hold millions of numbers: one stringify per row costs a fraction of one per number.
    if (v.every((e) => typeof e === 'number')) return JSON.stringify(v);
    if (v.every((e) => e === null || typeof e !== 'object')) return `[${v.map((e) => toJson(e)).join(',')}]`;
    return v.length === 0 ? '[]' : `[\n${v.map((e) => inner + toJson(e, inner)).join(',\n')}\n${indent}]`;
  }
  const entries = Object.entries(v as Record<string, unknown>).filter(([, e]) => e !== undefined);
  if (entries.length === 0) return '{}';
  return `{\n${entries.map(([k, e]) => `${inner}${JSON.stringify(k)}: ${toJson(e, inner)}`).join(',\n')}\n${indent}}`;
}

/** A bad argument or option: ours (`ERR_INVALID_ARG`) or `util.parseArgs`'. */
function isUsageError(e: unknown): e is Error {
  if (e instanceof WideepError) return e.code === 'ERR_INVALID_ARG';
  return e instanceof Error && ((e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS') ?? false);
}

/**
 * Reports `e` on stderr and returns the exit code: 2 for a usage error (the
 * message, one line per broken rule, then where the usage is), 1 for any other
 * WideepError (its message) and for an unexpected error (its stack, as a bug).
 * `command` names the subcommand for the pointer to its --help.
 */
export function reportError(e: unknown, io: CliIo, command?: string): number {
  if (e instanceof WideepError || isUsageError(e)) {
    const lines = e.message.split('\n').map((l) => `wideep: ${l}`);
    const usage = isUsageError(e);
    if (usage) lines[lines.length - 1] += ` (run 'wideep ${command ? `${command} ` : ''}--help' for usage)`;
    io.err(lines.join('\n'));
    return usage ? 2 : 1;
  }
  io.err(`wideep: ${(e as Error)?.stack ?? String(e)}`);
  return 1;
}
