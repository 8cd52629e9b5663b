import { WideepError } from '../errors.js';
import { requireCuda, type NativeGraph } from '../native/index.js';
import { callNative } from './call.js';
import type { Stream } from './stream.js';

/**
 * A CUDA graph captured from a stream. Replaying it launches everything that
 * was enqueued during the capture, with no host work per kernel.
 */
export class Graph implements Disposable {
  readonly device: number;
  #native: NativeGraph | undefined;

  private constructor(device: number, n: NativeGraph) {
    this.device = device;
    this.#native = n;
  }

  /**
   * Captures the work `body` enqueues on `stream` (awaiting it, so async
   * enqueue code works) and instantiates it. Nothing runs during the capture.
   */
  static async capture(stream: Stream, body: () => void | Promise<void>): Promise<Graph> {
    const cuda = requireCuda('Graph');
    callNative(() => cuda.Graph.beginCapture(stream.native));
    try {
      await body();
    } catch (e) {
      try {
        cuda.Graph.endCapture(stream.native).close();
      } catch {
        // the capture was already invalidated by the failure
      }
      throw e;
    }
    return new Graph(stream.device, callNative(() => cuda.Graph.endCapture(stream.native)));
  }

  get closed(): boolean {
    return this.#native === undefined;
  }

  /** Enqueues one replay on `stream`. */
  launch(stream: Stream): void {
    const n = this.#native;
    if (!n) throw new WideepError('ERR_CLOSED', 'Graph is closed');
    callNative(() => n.launch(stream.native));
  }

  close(): void {
    this.#native?.close();
    this.#native = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
