import { describe, expect, it } from 'vitest';

import { epStatusError } from '../../../src/ep/cuda/status.js';

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
});
