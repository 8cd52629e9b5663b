import { fromNative } from '../errors.js';

/** Runs a synchronous native call, re-labelling its errors as WideepError. */
export function callNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw fromNative(e, new Error());
  }
}

/** Awaits a native promise; a rejection gets the stack of the JS caller. */
export async function awaitNative<T>(fn: () => Promise<T>): Promise<T> {
  const site = new Error();
  try {
    return await fn();
  } catch (e) {
    throw fromNative(e, site);
  }
}
