/**
 * EP call numbers and local failures (docs/architecture.md "Errors and codes").
 *
 * A buffer numbers its dispatches (normal and low-latency) and its
 * cleanLowLatencyBuffer calls 1, 2, 3, … on every rank, whether they succeed
 * or not; a combine carries the number of the dispatch whose handle it
 * combines. Every message (cpu) and handshake (cuda) carries the number, so
 * calls that do not belong together fail with ERR_PROTOCOL instead of
 * exchanging data.
 *
 * A rank whose call fails before it communicates (a bad argument, no free
 * slot) still takes part in that call, flagged with its error's code, so the
 * call fails on every rank at once: the rank's own error there, ERR_PEER
 * naming it on the others. Nothing moves, and the buffer stays usable.
 */
import { WideepError, type ErrorCode } from '../errors.js';

export type CallKind = 'dispatch' | 'combine' | 'lowLatencyDispatch' | 'lowLatencyCombine' | 'cleanLowLatencyBuffer';
/** The calls that can fail locally once numbered (a clean checks nothing a peer could not see too). */
export type DataCallKind = Exclude<CallKind, 'cleanLowLatencyBuffer'>;

export interface EpCall {
  readonly kind: CallKind;
  /** Which buffer of its transport or group made it (ranks create buffers in the same order). */
  readonly buffer: number;
  /** The number of the dispatch (or clean); a combine's is its dispatch's. */
  readonly number: number;
  /** Set by the backend as this rank starts to communicate: from then on a failure belongs to the whole call. */
  started: boolean;
}

/**
 * How a local failure travels: LOCAL_FAILURE_BASE plus its code's place in
 * LOCAL_FAILURE_CODES (0 means none). The cuda kernels tell these apart from
 * their own error codes, which stay below the base (native/ep/ep_status.h).
 */
export const LOCAL_FAILURE_BASE = 100;
const LOCAL_FAILURE_CODES: readonly ErrorCode[] = [
  'ERR_INVALID_ARG',
  'ERR_SHAPE',
  'ERR_DTYPE',
  'ERR_CLOSED',
  'ERR_BUSY',
  'ERR_UNSUPPORTED',
  'ERR_TIMEOUT',
  'ERR_PEER',
  'ERR_PROTOCOL',
];
/** Any other error (a CUDA error, a bug): its name does not travel. */
const OTHER_FAILURE = LOCAL_FAILURE_BASE + LOCAL_FAILURE_CODES.length;

export function localFailureNumber(error: unknown): number {
  const i = error instanceof WideepError ? LOCAL_FAILURE_CODES.indexOf(error.code) : -1;
  return i < 0 ? OTHER_FAILURE : LOCAL_FAILURE_BASE + i;
}

export function isLocalFailure(n: number): boolean {
  return n >= LOCAL_FAILURE_BASE && n <= OTHER_FAILURE;
}

/** The error code a local failure number stands for, as messages show it. */
export function localFailureName(n: number): string {
  return LOCAL_FAILURE_CODES[n - LOCAL_FAILURE_BASE] ?? 'an unexpected error';
}

/** `dispatch #3`, `combine of dispatch #3` (a combine carries its dispatch's number). */
export function describeCall(kind: string, number: number): string {
  return kind === 'combine' || kind === 'lowLatencyCombine' ? `${kind} of dispatch #${number}` : `${kind} #${number}`;
}

/** The error of a call that peers failed locally (the rank of each and its failure number). */
export function peerFailedLocally(where: string, kind: CallKind, failed: readonly { rank: number; failure: number }[]): WideepError {
  const who = failed.map(({ rank, failure }) => `rank ${rank} failed this ${kind} (${localFailureName(failure)})`).join(', ');
  return new WideepError('ERR_PEER', `${where}: ${who} before sending anything, so the call failed on every rank and nothing moved; this buffer stays usable`);
}

/** The error of calls whose numbers (or buffers) differ between ranks. */
export function callsOutOfStep(where: string, peer: number, theirs: string, mine: string): WideepError {
  return new WideepError(
    'ERR_PROTOCOL',
    `${where}: rank ${peer} called ${theirs} where this rank called ${mine}; the ranks' calls are out of step ` +
      '(every rank must make the same EP calls in the same order, and combine the handles of the same dispatch)',
  );
}
