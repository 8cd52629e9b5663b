/** Reading the JSON files the CLI and the planner take (models, loads, weights). */
import { readFileSync } from 'node:fs';

import { WideepError } from '../errors.js';
import { MAX_LAYER_LOAD } from './limits.js';

/** Reads and parses `path`; `what` names it in errors (e.g. `--weights`). */
export function readJsonFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new WideepError('ERR_INVALID_ARG', `${what} ${path}: cannot read the file (${code ?? (e as Error).message})`, { cause: e });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new WideepError('ERR_INVALID_ARG', `${what} ${path}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/**
 * Checks that `value` is a non-empty rectangular `[rows][cols]` matrix of
 * expert loads: finite numbers >= 0 whose sum over a row stays within
 * `MAX_LAYER_LOAD` (EPLB sums them in float32). Errors name the first bad entry.
 */
export function toLoadMatrix(value: unknown, what: string): number[][] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new WideepError('ERR_INVALID_ARG', `${what}: expected a non-empty [layers][experts] array of numbers`);
  }
  const cols = Array.isArray(value[0]) ? (value[0] as unknown[]).length : -1;
  value.forEach((row: unknown, i) => {
    if (!Array.isArray(row)) throw new WideepError('ERR_INVALID_ARG', `${what}: row ${i} is not an array`);
    if (row.length !== cols || cols === 0) {
      throw new WideepError('ERR_INVALID_ARG', `${what}: row ${i} has ${row.length} entries, expected ${cols} like row 0 (and at least 1)`);
    }
    let total = 0;
    row.forEach((x: unknown, j) => {
      if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) {
        throw new WideepError('ERR_INVALID_ARG', `${what}: [${i}][${j}] is ${JSON.stringify(x)}, expected a finite number >= 0`);
      }
      total += x;
      if (total > MAX_LAYER_LOAD) {
        throw new WideepError(
          'ERR_INVALID_ARG',
          `${what}: [${i}][${j}] is ${x}, which takes row ${i}'s total load past ${MAX_LAYER_LOAD}, the most EPLB's float32 sums hold; scale the loads down`,
        );
      }
    });
  });
  return value as number[][];
}
