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
}

export const processIo: CliIo = {
  out: (t) => process.stdout.write(t.endsWith('\n') ? t : t + '\n'),
  err: (t) => process.stderr.write(t.endsWith('\n') ? t : t + '\n'),
};

/** Serialises a result for --json output (bigints as decimal strings). */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2);
}

/** Exit code 2 with the message for a usage error; WideepError messages as-is, exit 1. */
export function reportError(e: unknown, io: CliIo, usage?: string): number {
  if (e instanceof WideepError) {
    io.err(`wideep: ${e.message}${e.code === 'ERR_INVALID_ARG' && usage ? `\n\n${usage}` : ''}`);
    return e.code === 'ERR_INVALID_ARG' ? 2 : 1;
  }
  if (e instanceof Error && (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
    io.err(`wideep: ${e.message}${usage ? `\n\n${usage}` : ''}`);
    return 2;
  }
  io.err(`wideep: ${(e as Error)?.stack ?? String(e)}`);
  return 1;
}
