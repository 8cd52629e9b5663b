import { WideepError } from '../errors.js';
import { requireCuda, type NativeEvent } from '../native/index.js';
import { awaitNative, callNative } from './call.js';
import { checkDevice } from './device.js';
import type { Stream } from './stream.js';

/** A CUDA event. `done()` resolves on a pool thread, never blocking the event loop. */
export class Event implements Disposable {
  readonly device: number;
  readonly timing: boolean;
  #native: NativeEvent | undefined;

  constructor(device = 0, options: { timing?: boolean } = {}) {
    this.device = checkDevice(device);
    this.timing = options.timing ?? false;
    const cuda = requireCuda('Event');
    this.#native = callNative(() => new cuda.Event(this.device, this.timing));
  }

  /** @internal The native object, for other wrappers. */
  get native(): NativeEvent {
    if (!this.#native) throw new WideepError('ERR_CLOSED', 'Event is closed');
    return this.#native;
  }

  get closed(): boolean {
    return this.#native === undefined;
  }

  record(stream: Stream): this {
    const n = this.native;
    callNative(() => n.record(stream.native));
    return this;
  }

  /** True once all work captured by the last record() has completed. */
  query(): boolean {
    const n = this.native;
    return callNative(() => n.query());
  }

  /** Resolves when the recorded work has completed; rejects with its CUDA error. */
  done(): Promise<void> {
    const n = this.native;
    return awaitNative(() => n.synchronize());
  }

  /** Milliseconds from this event to `end`; both must be timing events that completed. */
  elapsedMs(end: Event): number {
    const n = this.native;
    return callNative(() => n.elapsedMs(end.native));
  }

  close(): void {
    this.#native?.close();
    this.#native = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
