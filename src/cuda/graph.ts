import { WideepError } from '../errors.js';
import { requireCuda, type GraphShape, type NativeGraph } from '../native/index.js';
import { callNative } from './call.js';
import type { Stream } from './stream.js';

/**
 * A CUDA graph captured from a stream. Replaying it launches everything that
 * was enqueued during the capture, with no host work per kernel.
 */
export class Graph implements Disposable {
  readonly device: number;
  #native: NativeGraph | undefined;
  readonly #owned: readonly { close(): void }[];

  private constructor(device: number, n: NativeGraph, owned: readonly { close(): void }[]) {
    this.device = device;
    this.#native = n;
    this.#owned = owned;
  }

  /**
   * Captures the work `body` enqueues on `stream` (awaiting it, so async
   * enqueue code works) and instantiates it. Nothing runs during the capture.
   * `owns`: what the graph reads or writes at every replay (buffers made for
   * it), closed with the graph.
   */
  static async capture(stream: Stream, body: () => void | Promise<void>, options: { owns?: readonly { close(): void }[] } = {}): Promise<Graph> {
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
    return new Graph(stream.device, callNative(() => cuda.Graph.endCapture(stream.native)), options.owns ?? []);
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

  /**
   * Its nodes by type and how they depend on each other: a straight line (one
   * root, no node with more than one edge in or out) is what CUDA launches
   * fastest; memory nodes and forks cost host time per launch.
   */
  describe(): GraphShape {
    const n = this.#native;
    if (!n) throw new WideepError('ERR_CLOSED', 'Graph is closed');
    return callNative(() => n.describe());
  }

  close(): void {
    if (!this.#native) return;
    this.#native.close();
    this.#native = undefined;
    for (const o of this.#owned) o.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
