import { WideepError } from '../errors.js';
import { requireCuda, type NativeStream } from '../native/index.js';
import { awaitNative, callNative } from './call.js';
import { checkDevice } from './device.js';
import { Event } from './event.js';

/** A CUDA stream. Enqueuing is synchronous and cheap; completion is a Promise. */
export class Stream implements Disposable {
  readonly device: number;
  #native: NativeStream | undefined;

  constructor(device = 0, options: { priority?: number } = {}) {
    this.device = checkDevice(device);
    const cuda = requireCuda('Stream');
    this.#native = callNative(() => new cuda.Stream(this.device, options.priority ?? 0));
  }

  /** @internal The native object, for other wrappers. */
  get native(): NativeStream {
    if (!this.#native) throw new WideepError('ERR_CLOSED', 'Stream is closed');
    return this.#native;
  }

  get closed(): boolean {
    return this.#native === undefined;
  }

  /** Resolves once all work queued so far has completed. */
  synchronize(): Promise<void> {
    const n = this.native;
    return awaitNative(() => n.synchronize());
  }

  query(): boolean {
    const n = this.native;
    return callNative(() => n.query());
  }

  /** True while a graph capture records this stream's work. */
  isCapturing(): boolean {
    const n = this.native;
    return callNative(() => n.isCapturing());
  }

  /** Makes later work on this stream wait for `event`. */
  waitEvent(event: Event): this {
    const n = this.native;
    callNative(() => n.waitEvent(event.native));
    return this;
  }

  /** Records a new event at the current point of this stream. */
  record(options: { timing?: boolean } = {}): Event {
    return new Event(this.device, options).record(this);
  }

  close(): void {
    this.#native?.close();
    this.#native = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

const defaults = new Map<number, Stream>();

/** A per-device stream used when a call is given none. */
export function defaultStream(device: number): Stream {
  let s = defaults.get(device);
  if (!s || s.closed) {
    s = new Stream(device);
    defaults.set(device, s);
  }
  return s;
}
