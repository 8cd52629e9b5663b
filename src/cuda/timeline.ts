import { WideepError } from '../errors.js';
import type { Event } from './event.js';
import type { Stream } from './stream.js';

/** One stage of a timeline: when it started and ended on the GPU, relative to the timeline's first mark. */
export interface TimelineSpan {
  label: string;
  /** The stream's lane: 0 for the first stream the timeline saw, 1 for the next, ... */
  lane: number;
  startUs: number;
  endUs: number;
  /** Host wall time of the stage's enqueue call, until its promise settled. */
  hostUs: number;
}

interface OpenSpan {
  label: string;
  lane: number;
  start: Event;
  end: Event;
  hostUs: number;
}

/**
 * GPU timestamps of a step's stages, per stream, from CUDA timing events
 * recorded around the work each stage enqueues. It shows where two streams
 * overlap (two-batch overlap) and what each stage costs, at the price of two
 * event records per stage; it cannot be used inside a graph capture.
 */
export class Timeline {
  readonly #spans: OpenSpan[] = [];
  readonly #lanes = new Map<Stream, number>();
  #origin: Event | undefined;

  /** Runs `enqueue` (which queues the stage's work on `stream`) between two timing events. */
  async span<T>(label: string, stream: Stream, enqueue: () => T | Promise<T>): Promise<T> {
    if (stream.isCapturing()) throw new WideepError('ERR_UNSUPPORTED', `Timeline.span(${label}): not during a CUDA-graph capture`);
    let lane = this.#lanes.get(stream);
    if (lane === undefined) {
      lane = this.#lanes.size;
      this.#lanes.set(stream, lane);
    }
    const start = stream.record({ timing: true });
    this.#origin ??= start;
    const t0 = performance.now();
    const result = await enqueue();
    const hostUs = (performance.now() - t0) * 1e3;
    this.#spans.push({ label, lane, start, end: stream.record({ timing: true }), hostUs });
    return result;
  }

  /** The spans in the order they were enqueued; waits for the GPU to reach the last one. */
  async read(): Promise<TimelineSpan[]> {
    const origin = this.#origin;
    if (!origin) return [];
    await Promise.all([origin.done(), ...this.#spans.map((s) => s.end.done())]);
    const us = (e: Event) => origin.elapsedMs(e) * 1e3;
    return this.#spans.map((s) => ({ label: s.label, lane: s.lane, startUs: us(s.start), endUs: us(s.end), hostUs: s.hostUs }));
  }

  /** Frees the events; the timeline can be filled again. */
  clear(): void {
    for (const s of this.#spans) {
      s.start.close();
      s.end.close();
    }
    this.#spans.length = 0;
    this.#lanes.clear();
    this.#origin = undefined;
  }

  [Symbol.dispose](): void {
    this.clear();
  }
}
