/** Asserts that a call or promise fails with a WideepError of `code` whose message contains every fragment. */
import { expect } from 'vitest';
import { WideepError, type ErrorCode } from '../../src/errors.js';

export async function expectWideepError(action: Promise<unknown> | (() => unknown), code: ErrorCode, ...fragments: string[]): Promise<WideepError> {
  let error: unknown;
  try {
    await (typeof action === 'function' ? action() : action);
  } catch (e) {
    error = e;
  }
  expect(error, `expected a WideepError ${code}`).toBeInstanceOf(WideepError);
  const e = error as WideepError;
  expect(e.code, e.message).toBe(code);
  for (const f of fragments) expect(e.message).toContain(f);
  return e;
}
