/** Turns the EP kernels' error record (native/ep/ep_status.h) into a WideepError. */
import { WideepError } from '../../errors.js';

export interface NativeEpStatus {
  code: number;
  phase: number;
  peer: number;
  value: number;
}

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
        `rank ${rank}: ${s.value} rows arrived, more than numWorstTokens; raise numWorstTokens. The buffer is unusable now.`,
      );
    case 4:
      return new WideepError(
        'ERR_INVALID_ARG',
        `rank ${rank}: rank ${s.peer} called ${phase} with another hidden size, top-k or dtype. The buffer is unusable now.`,
      );
    case 5:
      return new WideepError(
        'ERR_PEER',
        `rank ${rank}: rank ${s.peer} failed in the ${phase} (its error code ${s.value}), so nothing was sent. The buffer is unusable now.`,
      );
    default:
      return new WideepError('ERR_PEER', `rank ${rank}: EP kernel error ${s.code} in the ${phase}`);
  }
}
