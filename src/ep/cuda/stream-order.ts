/**
 * Orders EP operations enqueued on several streams: each waits for the one
 * enqueued before it. A buffer keeps one order for its own operations (they
 * share its slots and counters). All buffers on one GPU share another for
 * their low-latency launches: those take every SM and wait for their peers'
 * matching kernels, so two buffers' kernels on two streams, started in
 * different orders on two GPUs, would wait on each other until ERR_TIMEOUT.
 */
import { Event } from '../../cuda/event.js';
import type { Stream } from '../../cuda/stream.js';

export class StreamOrder {
  #last: Stream | undefined;
  /** The event recorded right after the last operation, if one was. */
  #lastDone: Event | undefined;
  /** Recorded on the last stream at a switch when no #lastDone says where its operation ended. */
  #switchEvent: Event | undefined;
  readonly #makeEvent: () => Event;

  constructor(makeEvent: () => Event) {
    this.#makeEvent = makeEvent;
  }

  /**
   * Orders the next operation, on `s`, after the last one. A switch of stream
   * waits for the event the last operation recorded (not for later work on
   * its stream, and valid after that stream is closed; a closed event's
   * buffer has finished its work); a CUDA-graph capture is left to order
   * itself (it cannot wait on work outside it). done() follows the launch.
   */
  follow(s: Stream): void {
    const last = this.#last;
    if (last && last !== s && !s.isCapturing()) {
      const done = this.#lastDone;
      if (done) {
        if (!done.closed) s.waitEvent(done);
      } else if (!last.closed && !last.isCapturing()) {
        this.#switchEvent ??= this.#makeEvent();
        this.#switchEvent.record(last);
        s.waitEvent(this.#switchEvent);
      }
    }
    this.#last = s;
    this.#lastDone = undefined;
  }

  /** The event the operation just enqueued recorded behind it, if it recorded one. */
  done(event: Event | undefined): void {
    this.#lastDone = event;
  }

  close(): void {
    this.#switchEvent?.close();
  }
}

/** The low-latency order of each GPU, while some buffer on it is open. */
const lowLatencyOrders = new Map<number, { order: StreamOrder; users: number }>();

/** The order of low-latency launches on `device`, shared by its buffers; give it back with releaseLowLatencyOrder. */
export function acquireLowLatencyOrder(device: number): StreamOrder {
  let entry = lowLatencyOrders.get(device);
  if (!entry) {
    entry = { order: new StreamOrder(() => new Event(device)), users: 0 };
    lowLatencyOrders.set(device, entry);
  }
  entry.users++;
  return entry.order;
}

export function releaseLowLatencyOrder(device: number): void {
  const entry = lowLatencyOrders.get(device);
  if (!entry || --entry.users > 0) return;
  entry.order.close();
  lowLatencyOrders.delete(device);
}
