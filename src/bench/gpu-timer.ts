/**
 * Times GPU work with CUDA events around it, after warm-up, optionally
 * flushing L2 before every run by writing a scratch buffer larger than it.
 */
import type { Stream } from '../cuda/stream.js';
import { Tensor } from '../tensor/tensor.js';

/** H200 L2 is 60 MB; writing 256 MiB evicts it. */
const FLUSH_BYTES = 256 << 20;

export interface Samples {
  /** GPU time per run, from events (µs). */
  kernelUs: number[];
  /** Wall time of the JS call, until its promise settled (µs). */
  wallUs: number[];
}

export class GpuTimer implements Disposable {
  readonly #stream: Stream;
  readonly #flush: Tensor | undefined;

  constructor(stream: Stream, options: { flushL2: boolean }) {
    this.#stream = stream;
    this.#flush = options.flushL2
      ? Tensor.empty([FLUSH_BYTES], 'u8', { device: `cuda:${stream.device}`, stream })
      : undefined;
  }

  /**
   * Runs `op` warmup + iters times. `before` and `after` run untimed around
   * each run (e.g. a dispatch to combine, then releasing its result).
   */
  async time<T, B = void>(o: {
    iters: number;
    warmup: number;
    before?: () => Promise<B>;
    op: (b: B) => Promise<T>;
    after?: (r: T, b: B) => void | Promise<void>;
  }): Promise<Samples> {
    const { iters, warmup, op, after } = o;
    const out: Samples = { kernelUs: [], wallUs: [] };
    for (let i = 0; i < warmup + iters; i++) {
      const b = (await o.before?.()) as B;
      this.#flush?.fillBytes(i & 0xff, this.#stream);
      const start = this.#stream.record({ timing: true });
      const t0 = performance.now();
      const r = await op(b);
      const wall = performance.now() - t0;
      const end = this.#stream.record({ timing: true });
      await end.done();
      if (i >= warmup) {
        out.kernelUs.push(start.elapsedMs(end) * 1e3);
        out.wallUs.push(wall * 1e3);
      }
      start.close();
      end.close();
      await after?.(r, b);
    }
    return out;
  }

  close(): void {
    this.#flush?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
