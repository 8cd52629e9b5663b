/**
 * The cuda backend's ordering of EP operations across streams
 * (src/ep/cuda/stream-order.ts), with stand-in streams and events that
 * record what they are asked: a buffer's operations run in the order they
 * were enqueued, and so do the low-latency launches of all buffers on a GPU,
 * so that two buffers' kernels on two streams cannot wait on each other.
 */
import { describe, expect, test } from 'vitest';
import type { Event } from '../../../src/cuda/event.js';
import type { Stream } from '../../../src/cuda/stream.js';
import { StreamOrder, acquireLowLatencyOrder, releaseLowLatencyOrder } from '../../../src/ep/cuda/stream-order.js';

class FakeStream {
  readonly waits: string[] = [];
  closed = false;
  capturing = false;
  constructor(readonly name: string) {}
  isCapturing(): boolean {
    return this.capturing;
  }
  waitEvent(e: FakeEvent): this {
    this.waits.push(`${e.name}@${e.recordedOn}`);
    return this;
  }
}

class FakeEvent {
  closed = false;
  recordedOn = '';
  constructor(readonly name: string) {}
  record(s: FakeStream): this {
    this.recordedOn = s.name;
    return this;
  }
  close(): void {
    this.closed = true;
  }
}

const stream = (name: string) => new FakeStream(name) as unknown as Stream & FakeStream;
const event = (name: string, on: FakeStream) => new FakeEvent(name).record(on) as unknown as Event & FakeEvent;

describe('StreamOrder', () => {
  test('a switch of stream waits for the event the last operation recorded, else for a switch event on its stream', () => {
    const made: FakeEvent[] = [];
    const order = new StreamOrder(() => made[made.push(new FakeEvent('switch')) - 1] as unknown as Event);
    const [a, b, c] = [stream('a'), stream('b'), stream('c')];
    order.follow(a);
    order.done(event('dispatch', a));
    order.follow(a); // same stream: stream order suffices
    expect(a.waits).toEqual([]);
    order.done(event('combine', a));
    order.follow(b);
    expect(b.waits).toEqual(['combine@a']);
    order.done(undefined); // a launch that recorded nothing (captured, or a refused call's part)
    order.follow(c);
    expect(c.waits).toEqual(['switch@b']);
    expect(made).toHaveLength(1);
    order.close();
    expect(made[0]!.closed).toBe(true);
  });

  test('nothing to wait for: a capture (it cannot wait on outside work), a closed event (its buffer finished), a closed stream', () => {
    const order = new StreamOrder(() => {
      throw new Error('no switch event expected');
    });
    const [a, b, c, d] = [stream('a'), stream('b'), stream('c'), stream('d')];
    order.follow(a);
    b.capturing = true;
    order.follow(b);
    const done = event('ll', b);
    order.done(done);
    done.closed = true;
    order.follow(c);
    c.closed = true;
    order.follow(d);
    expect([a, b, c, d].flatMap((s) => s.waits)).toEqual([]);
  });
});

describe('the low-latency order of a GPU', () => {
  test('is shared by every buffer on the GPU while one is open: a launch of one waits for the last launch of another', () => {
    const first = acquireLowLatencyOrder(3);
    const second = acquireLowLatencyOrder(3);
    expect(second).toBe(first);
    expect(acquireLowLatencyOrder(4)).not.toBe(first);
    const [s1, s2] = [stream('buffer 1'), stream('buffer 2')];
    first.follow(s1);
    first.done(event('ll dispatch', s1));
    second.follow(s2);
    expect(s2.waits).toEqual(['ll dispatch@buffer 1']);
    releaseLowLatencyOrder(3);
    releaseLowLatencyOrder(3);
    releaseLowLatencyOrder(4);
    expect(acquireLowLatencyOrder(3)).not.toBe(first);
    releaseLowLatencyOrder(3);
  });
});
