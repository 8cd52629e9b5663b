/**
 * Parses SGLang's parallelism flags (`--tp 64 --dp-size 64 --enable-dp-attention …`)
 * into camelCase `ParallelOptions`, accepting SGLang's spellings and aliases.
 * Validation of combinations is `ParallelConfig`'s job; this file only turns
 * strings into typed values.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { WideepError } from '../errors.js';
import { OPTION_SPECS, type ParallelOptions } from './options.js';

export type ArgOptions = NonNullable<ParseArgsConfig['options']>;

export interface ParsedSglangArgs {
  /** The SGLang options that were given (absent ones stay undefined). */
  options: ParallelOptions;
  /** Raw values of the caller's extra options, by name. */
  extra: Record<string, string | boolean | undefined>;
  positionals: string[];
  /** Deprecated spellings that were translated. */
  warnings: string[];
}

/** `--enable-deepep-moe` is SGLang's older spelling of `--moe-a2a-backend deepep`. */
const DEPRECATED_DEEPEP_FLAG = 'enable-deepep-moe';

/** Parses `raw` as an integer >= `min` for `flag`, or throws naming both. */
export function parseIntFlag(flag: string, raw: string, min = 0): number {
  const v = /^[+-]?\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(v) || v < min) {
    throw new WideepError('ERR_INVALID_ARG', `${flag} ${raw}: must be an integer >= ${min}`);
  }
  return v;
}

/** Parses `raw` as a finite number for `flag`, or throws naming both. */
export function parseNumberFlag(flag: string, raw: string): number {
  const v = raw.trim() === '' ? Number.NaN : Number(raw);
  if (!Number.isFinite(v)) throw new WideepError('ERR_INVALID_ARG', `${flag} ${raw}: must be a number`);
  return v;
}

function bare(flag: string): string {
  return flag.replace(/^--/, '');
}

/** The parseArgs option table for every SGLang flag and alias. */
export function sglangArgOptions(): ArgOptions {
  const out: ArgOptions = { [DEPRECATED_DEEPEP_FLAG]: { type: 'boolean' } };
  for (const spec of Object.values(OPTION_SPECS)) {
    for (const name of [spec.flag, ...spec.aliases]) {
      out[bare(name)] = { type: spec.kind === 'boolean' ? 'boolean' : 'string' };
    }
  }
  return out;
}

/**
 * Parses argv. `extra` adds the caller's own options (they must not reuse an
 * SGLang name). Unknown flags are refused (`ERR_PARSE_ARGS_UNKNOWN_OPTION`).
 */
export function parseSglangArgs(argv: readonly string[], extra: ArgOptions = {}): ParsedSglangArgs {
  const sglang = sglangArgOptions();
  for (const name of Object.keys(extra)) {
    if (name in sglang) throw new WideepError('ERR_INVALID_ARG', `option --${name} is already an SGLang flag`);
  }
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: { ...sglang, ...extra },
    strict: true,
    allowPositionals: true,
  });
  const raw = values as Record<string, string | boolean | undefined>;
  const options: ParallelOptions = {};
  const warnings: string[] = [];
  const set = options as Record<string, unknown>;

  for (const [key, spec] of Object.entries(OPTION_SPECS)) {
    const given = [spec.flag, ...spec.aliases].map((f) => [f, raw[bare(f)]] as const).filter(([, v]) => v !== undefined);
    if (given.length === 0) continue;
    const [flag, value] = given[0]!;
    for (const [otherFlag, otherValue] of given.slice(1)) {
      if (otherValue !== value) {
        throw new WideepError('ERR_INVALID_ARG', `${otherFlag} ${String(otherValue)}: conflicts with ${flag} ${String(value)} (the same option)`);
      }
    }
    if (spec.kind === 'boolean') set[key] = value;
    else if (spec.kind === 'int') set[key] = parseIntFlag(flag, value as string);
    else if (spec.kind === 'number') set[key] = parseNumberFlag(flag, value as string);
    else set[key] = value;
  }

  if (raw[DEPRECATED_DEEPEP_FLAG]) {
    if (options.moeA2aBackend !== undefined && options.moeA2aBackend !== 'deepep') {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `--${DEPRECATED_DEEPEP_FLAG}: conflicts with --moe-a2a-backend ${options.moeA2aBackend}`,
      );
    }
    options.moeA2aBackend = 'deepep';
    warnings.push(`--${DEPRECATED_DEEPEP_FLAG} is deprecated in SGLang; read as --moe-a2a-backend deepep`);
  }

  const extraValues: Record<string, string | boolean | undefined> = {};
  for (const name of Object.keys(extra)) extraValues[name] = raw[name];
  return { options, extra: extraValues, positionals, warnings };
}
