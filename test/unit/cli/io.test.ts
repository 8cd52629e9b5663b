import { EventEmitter } from 'node:events';
import { parseArgs } from 'node:util';

import { describe, expect, it } from 'vitest';

import { reportError, streamIo, toJson, type CliIo, type TextStream } from '../../../src/cli/command.js';
import { main } from '../../../src/cli/main.js';
import { WideepError } from '../../../src/errors.js';

function capture(): { io: CliIo; err: string[]; out: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (t) => out.push(t), err: (t) => err.push(t) }, out, err };
}

/** A stream that records what is written, as a terminal or not. */
class FakeStream extends EventEmitter implements TextStream {
  written = '';
  constructor(
    readonly isTTY = false,
    readonly columns?: number,
  ) {
    super();
  }
  write(text: string): boolean {
    this.written += text;
    return true;
  }
}

describe('reportError', () => {
  it('prints one line for a usage error, with the pointer to --help, and returns 2', () => {
    const c = capture();
    const code = reportError(new WideepError('ERR_INVALID_ARG', '--ranks 3: must divide 64'), c.io, 'demo');
    expect(code).toBe(2);
    expect(c.err).toEqual(["wideep: --ranks 3: must divide 64 (run 'wideep demo --help' for usage)"]);
  });

  it('prints one line per broken rule, each prefixed', () => {
    const c = capture();
    reportError(new WideepError('ERR_INVALID_ARG', 'rule one\nrule two'), c.io, 'plan');
    expect(c.err.join('\n').split('\n')).toEqual(['wideep: rule one', "wideep: rule two (run 'wideep plan --help' for usage)"]);
  });

  it("treats util.parseArgs' errors as usage errors", () => {
    const c = capture();
    let parseError: unknown;
    try {
      parseArgs({ args: ['--bogus'], options: {}, strict: true });
    } catch (e) {
      parseError = e;
    }
    expect(reportError(parseError, c.io, 'eplb')).toBe(2);
    expect(c.err).toHaveLength(1);
    expect(c.err[0]).toMatch(/^wideep: Unknown option '--bogus'.* \(run 'wideep eplb --help' for usage\)$/);
  });

  it('prints other WideepErrors as one line, without the pointer, and returns 1', () => {
    const c = capture();
    expect(reportError(new WideepError('ERR_TIMEOUT', 'rank 2 did not answer in 30 s'), c.io, 'launch')).toBe(1);
    expect(c.err).toEqual(['wideep: rank 2 did not answer in 30 s']);
  });

  it('prints the stack of an unexpected error (a bug) and returns 1', () => {
    const c = capture();
    expect(reportError(new TypeError('x is undefined'), c.io, 'plan')).toBe(1);
    expect(c.err[0]).toMatch(/^wideep: TypeError: x is undefined\n {4}at /);
  });
});

describe('main', () => {
  it('names an unknown command and the commands in one line', async () => {
    const c = capture();
    expect(await main(['deploy'], c.io)).toBe(2);
    expect(c.err).toEqual(["wideep: unknown command 'deploy': expected one of doctor, bench, demo, eplb, plan, launch (run 'wideep --help' for usage)"]);
    expect(c.out).toEqual([]);
  });

  it("points a command's usage error at that command's --help", async () => {
    const c = capture();
    expect(await main(['eplb', '--replicas', '4'], c.io)).toBe(2);
    expect(c.err).toEqual(["wideep: --weights is required (run 'wideep eplb --help' for usage)"]);
  });
});

describe('streamIo', () => {
  it('has no progress line when stderr is not a terminal', () => {
    const io = streamIo(new FakeStream(), new FakeStream());
    expect(io.progress).toBeUndefined();
  });

  it('rewrites the progress line in place on a terminal, cut to its width, and erases it before other output', () => {
    const stdout = new FakeStream();
    const stderr = new FakeStream(true, 12);
    const io = streamIo(stdout, stderr);
    io.progress!('step 1 of 5, working');
    io.progress!('step 2');
    io.out('result');
    io.err('done');
    expect(stderr.written).toBe('step 1 of 5\r\x1b[Kstep 2\r\x1b[Kdone\n');
    expect(stdout.written).toBe('result\n');
    io.progress!('step 3');
    io.progress!('');
    expect(stderr.written.endsWith('step 3\r\x1b[K')).toBe(true);
  });

  it('takes 80 columns for a terminal of unknown width', () => {
    const stderr = new FakeStream(true, 0);
    streamIo(new FakeStream(), stderr).progress!('x'.repeat(100));
    expect(stderr.written).toBe('x'.repeat(79));
  });

  it('drops output once the reader has gone (EPIPE), and still raises other write errors', () => {
    const stdout = new FakeStream();
    const io = streamIo(stdout, new FakeStream());
    io.out('first');
    stdout.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    io.out('second');
    expect(stdout.written).toBe('first\n');
    expect(() => stdout.emit('error', Object.assign(new Error('write EIO'), { code: 'EIO' }))).toThrow(/EIO/);
  });
});

describe('toJson', () => {
  it('prints arrays of plain values on one line and objects indented', () => {
    expect(toJson({ a: [1, 2, Number.NaN], b: ['x', null, 5n], c: { d: new Int32Array([4, 5]) } })).toBe(
      '{\n  "a": [1,2,null],\n  "b": ["x",null,"5"],\n  "c": {\n    "d": [4,5]\n  }\n}',
    );
  });
});
