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

/**
 * Serialises a result for --json output: indented objects, arrays of plain
 * values on one line (placement tables stay readable), bigints as strings.
 */
export function toJson(value: unknown, indent = ''): string {
  if (ArrayBuffer.isView(value)) return toJson(Array.from(value as unknown as ArrayLike<unknown>), indent);
  const json = (value as { toJSON?: () => unknown } | null)?.toJSON;
  const v = typeof value === 'bigint' ? value.toString() : typeof json === 'function' ? json.call(value) : value;
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  const inner = indent + '  ';
  if (Array.isArray(v)) {
    if (v.every((e) => e === null || typeof e !== 'object')) return `[${v.map((e) => toJson(e)).join(', ')}]`;
    return v.length === 0 ? '[]' : `[\n${v.map((e) => inner + toJson(e, inner)).join(',\n')}\n${indent}]`;
  }
  const entries = Object.entries(v as Record<string, unknown>).filter(([, e]) => e !== undefined);
  if (entries.length === 0) return '{}';
  return `{\n${entries.map(([k, e]) => `${inner}${JSON.stringify(k)}: ${toJson(e, inner)}`).join(',\n')}\n${indent}}`;
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
