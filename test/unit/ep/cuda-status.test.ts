import { describe, expect, it } from 'vitest';

import { LOCAL_FAILURE_BASE, localFailureNumber } from '../../../src/ep/calls.js';
import { epStatusError } from '../../../src/ep/cuda/status.js';
import { WideepError } from '../../../src/errors.js';

describe('the EP kernels error record as a WideepError', () => {
  it('says what became of a bad top-k id in each mode', () => {
    const normal = epStatusError({ code: 2, phase: 6, peer: 3, value: 300 }, 1);
    expect(normal.code).toBe('ERR_INVALID_ARG');
    expect(normal.message).toContain('rank 1: topkIdx of token 3 holds 300, outside [-1, numExperts); nothing was sent');
    const lowLatency = epStatusError({ code: 2, phase: 4, peer: 5, value: -7 }, 0);
    expect(lowLatency.code).toBe('ERR_INVALID_ARG');
    expect(lowLatency.message).toContain('token 5 holds -7, outside [-1, numExperts); the low-latency dispatch sent the token without it');
  });

  it('names the phase and the peer of a timeout', () => {
    const e = epStatusError({ code: 1, phase: 5, peer: 2, value: 0 }, 0);
    expect(e.code).toBe('ERR_TIMEOUT');
    expect(e.message).toContain('the low-latency combine waited too long for rank 2');
  });

  it("names a peer that refused the call on its host, with that rank's error code, as the cpu backend does", () => {
    const failure = localFailureNumber(new WideepError('ERR_SHAPE', 'x'));
    expect(failure).toBeGreaterThanOrEqual(LOCAL_FAILURE_BASE);
    const e = epStatusError({ code: 5, phase: 4, peer: 1, value: failure }, 0);
    expect(e.code).toBe('ERR_PEER');
    expect(e.message).toContain('rank 1 failed this lowLatencyDispatch (ERR_SHAPE)');
    expect(e.message).toContain('stays usable');
    // A peer's own kernel error is not a refusal: the buffer is done.
    expect(epStatusError({ code: 5, phase: 3, peer: 2, value: 1 }, 0).message).toContain('The buffer is unusable now');
  });

  it('says which rank is in another call (ERR_PROTOCOL) and which rank a numWorstTokens overflow stopped', () => {
    const protocol = epStatusError({ code: 6, phase: 1, peer: 3, value: 42 }, 0);
    expect(protocol.code).toBe('ERR_PROTOCOL');
    expect(protocol.message).toContain('rank 3 is in call #42');
    const worst = epStatusError({ code: 3, phase: 1, peer: 2, value: 77 }, 0);
    expect(worst.code).toBe('ERR_INVALID_ARG');
    expect(worst.message).toContain('rank 2 would receive 77 rows, more than its numWorstTokens, so every rank stopped');
  });
});
