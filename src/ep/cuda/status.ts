/** Turns the EP kernels' error records (native/ep/ep_status.h) into WideepErrors. */
import { WideepError } from '../../errors.js';
import { isLocalFailure, peerFailedLocally, type DataCallKind } from '../calls.js';

export interface NativeEpStatus {
  code: number;
  phase: number;
  peer: number;
  value: number;
}

/**
 * Where the addon keeps a call's verdict (readCallStatus): its kind (0
 * dispatch and 1 combine, per receive slot; 2 and 3 their low-latency twins,
 * per half) and slot or half.
 */
export interface CallRecord {
  kind: 0 | 1 | 2 | 3;
  index: number;
}

/** The call each phase belongs to, named as the cpu backend names it. */
const CALLS: Record<number, DataCallKind> = { 1: 'dispatch', 2: 'dispatch', 3: 'combine', 4: 'lowLatencyDispatch', 5: 'lowLatencyCombine' };

const PHASES: Record<number, string> = {
  1: 'dispatch notify',
  2: 'dispatch data',
  3: 'combine',
  4: 'low-latency dispatch',
  5: 'low-latency combine',
  6: 'dispatch layout',
};

export function epStatusError(s: NativeEpStatus, rank: number): WideepError {
  const phase = PHASES[s.phase] ?? `phase ${s.phase}`;
  switch (s.code) {
    case 1:
      return new WideepError(
        'ERR_TIMEOUT',
        `rank ${rank}: the ${phase} waited too long for ${s.peer >= 0 ? `rank ${s.peer}` : 'its peers'}; ` +
          'a peer is dead or called a different operation. The buffer is unusable now; recreate it.',
      );
    case 2:
      return new WideepError(
        'ERR_INVALID_ARG',
        `rank ${rank}: topkIdx of token ${s.peer} holds ${s.value}, outside [-1, numExperts); ` +
          `${s.phase === 4 ? 'the low-latency dispatch sent the token without it' : 'nothing was sent'}. ` +
          'The buffer is unusable now; recreate it.',
      );
    case 3:
      return new WideepError(
        'ERR_INVALID_ARG',
        `rank ${rank}: rank ${s.peer} would receive ${s.value} rows, more than its numWorstTokens, so every rank stopped ` +
          'before any row moved; raise numWorstTokens. The buffer is unusable now; recreate it.',
      );
    case 4:
      return new WideepError(
        'ERR_INVALID_ARG',
        `rank ${rank}: rank ${s.peer} called ${phase} with another hidden size, top-k or dtype. The buffer is unusable now.`,
      );
    case 5:
      if (isLocalFailure(s.value)) return peerFailedLocally(`rank ${rank}`, CALLS[s.phase] ?? 'dispatch', [{ rank: s.peer, failure: s.value }]);
      return new WideepError(
        'ERR_PEER',
        `rank ${rank}: rank ${s.peer} failed in the ${phase} (its error code ${s.value}), so nothing was sent. The buffer is unusable now.`,
      );
    case 6:
      return new WideepError(
        'ERR_PROTOCOL',
        `rank ${rank}: in the ${phase}, rank ${s.peer} is in call #${s.value} of this buffer and this rank in another; ` +
          "the ranks' calls are out of step (every rank must make the same EP calls in the same order, and combine the handles " +
          'of the same dispatch). The buffer is unusable now; recreate it.',
      );
    default:
      return new WideepError('ERR_PEER', `rank ${rank}: EP kernel error ${s.code} in the ${phase}`);
  }
}
