/**
 * Times GPU work with CUDA events around it, after warm-up, optionally
 * flushing L2 before every run by writing a scratch buffer larger than it.
 *
 * Before each run the ranks are lined up on the GPU (an all-reduce of one
 * value, when a communicator is given) and the stream is kept busy for a
 * fixed time (a sleep kernel) while the host enqueues the run, so that the
 * events measure GPU time only: neither the host's enqueue latency nor the
 * skew between the ranks' hosts shows up in it.
 */
import type { Communicator } from '../../comm/communicator.js';
import { Event } from '../../cuda/event.js';
import type { Stream } from '../../cuda/stream.js';
import { requireCuda } from '../../native/index.js';
import { Tensor } from '../../tensor/tensor.js';

/** Long enough for the host to enqueue any measured call behind it. */
const ENQUEUE_COVER_NS = 2_000_000;

/** Long enough for the host to enqueue a few dozen calls back to back behind it. */
const BACK_TO_BACK_COVER_NS = 50_000_000;

/** H200 L2 is 60 MB; writing 256 MiB evicts it. */
const FLUSH_BYTES = 256 << 20;

export interface Samples {
  /** GPU time per run, from events (µs). */
  kernelUs: number[];
  /** Wall time of the JS call, until its promise settled (µs). */
  wallUs: number[];
}

/** The timed event an EP call returned, if any. */
function ownEvent(r: unknown): Event | undefined {
  const e = (r as { event?: unknown } | null)?.event;
  return e instanceof Event && e.timing ? e : undefined;
}

export class GpuTimer implements Disposable {
  readonly #stream: Stream;
  readonly #flush: Tensor | undefined;
  readonly #comm: Communicator | undefined;
  readonly #one: Tensor | undefined;
  readonly #coverNs: number;

  /** `coverNs`: how long the stream is kept busy before each run (default 2 ms). */
  constructor(stream: Stream, options: { flushL2: boolean; comm?: Communicator; coverNs?: number }) {
    this.#stream = stream;
    this.#coverNs = options.coverNs ?? ENQUEUE_COVER_NS;
    const on = { device: `cuda:${stream.device}` as const, stream };
    this.#flush = options.flushL2 ? Tensor.empty([FLUSH_BYTES], 'u8', on) : undefined;
    this.#comm = options.comm;
    this.#one = options.comm ? Tensor.zeros([1], 'f32', on) : undefined;
  }

  /** Lines the ranks up, flushes L2, and covers the coming enqueue with GPU work. */
  #prepare(i: number): void {
    if (this.#comm && this.#one) this.#comm.allReduce(this.#one, { stream: this.#stream });
    this.#flush?.fillBytes(i & 0xff, this.#stream);
    requireCuda('GpuTimer').sleep(this.#coverNs, this.#stream.native);
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
      this.#prepare(i);
      const start = this.#stream.record({ timing: true });
      const t0 = performance.now();
      const r = await op(b);
      const wall = performance.now() - t0;
      // An EP call's own event was recorded right after its launches, before
      // any host wait for counts; an end event recorded after that wait would
      // add the host's wake-up whenever the kernels finish first.
      const own = ownEvent(r);
      const end = own ?? this.#stream.record({ timing: true });
      await end.done();
      if (i >= warmup) {
        out.kernelUs.push(start.elapsedMs(end) * 1e3);
        out.wallUs.push(wall * 1e3);
      }
      start.close();
      if (!own) end.close();
      await after?.(r, b);
    }
    return out;
  }

  /**
   * Host µs per call of `op` with `calls` calls back to back behind a long
   * sleep kernel (the host busy, never woken from an idle wait between
   * calls), one mean per round: the host's cost of an enqueue-only call as a
   * loop that keeps launching pays it.
   */
  async hostBackToBack(op: () => void, o: { calls: number; rounds: number }): Promise<number[]> {
    const means: number[] = [];
    for (let r = 0; r < o.rounds; r++) {
      requireCuda('GpuTimer').sleep(BACK_TO_BACK_COVER_NS, this.#stream.native);
      const t0 = performance.now();
      for (let i = 0; i < o.calls; i++) op();
      means.push(((performance.now() - t0) * 1e3) / o.calls);
      const end = this.#stream.record();
      await end.done();
      end.close();
    }
    return means;
  }

  /** Enqueues the same preparation for timing code of its own (see measureLowLatency). */
  prepare(i: number): void {
    this.#prepare(i);
  }

  close(): void {
    this.#flush?.close();
    this.#one?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
