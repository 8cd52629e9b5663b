import { describe, expect, it } from 'vitest';

import type { CliIo } from '../../../src/cli/command.js';
import { command } from '../../../src/cli/commands/demo.js';
import { command as plan } from '../../../src/cli/commands/plan.js';

/** An io whose stderr is a terminal when `tty`: it then offers a progress line. */
function capture(tty: boolean): { io: CliIo; out: string[]; err: string[]; progress: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const progress: string[] = [];
  const io: CliIo = { out: (t) => out.push(t), err: (t) => err.push(t) };
  if (tty) io.progress = (t) => progress.push(t);
  return { io, out, err, progress };
}

describe('wideep demo progress', () => {
  it('shows the running stage on a terminal', async () => {
    const c = capture(true);
    expect(await command.run(['--ranks', '2'], c.io)).toBe(0);
    expect(c.progress).toEqual([
      'demo: running step 0 (0 of 5 done)…',
      'demo: running step 1 (1 of 5 done)…',
      'demo: running step 2 (2 of 5 done)…',
      // Again after the rebalance's line, which erased it.
      'demo: running step 2 (2 of 5 done)…',
      'demo: running step 3 (3 of 5 done)…',
      'demo: running step 4 (4 of 5 done)…',
      'demo: running the dense reference…',
    ]);
    expect(c.err).toEqual([]);
  });

  it('stays quiet in --json mode, even on a terminal', async () => {
    const c = capture(true);
    expect(await command.run(['--ranks', '2', '--json'], c.io)).toBe(0);
    expect(c.progress).toEqual([]);
    expect(c.err).toEqual([]);
    expect(c.out).toHaveLength(1);
    expect(JSON.parse(c.out[0]!)).toMatchObject({ pass: true });
  });
});

describe('wideep plan progress', () => {
  it('says what it is doing on a terminal, and nothing in --json mode', async () => {
    const text = capture(true);
    expect(await plan.run(['--tp', '8', '--ep-size', '8'], text.io)).toBe(0);
    expect(text.progress).toEqual(['wideep plan: sizing groups, memory and traffic, placing the experts…']);
    const json = capture(true);
    expect(await plan.run(['--tp', '8', '--ep-size', '8', '--json'], json.io)).toBe(0);
    expect(json.progress).toEqual([]);
    expect(JSON.parse(json.out.join('\n'))).toMatchObject({ fits: true });
  });
});
