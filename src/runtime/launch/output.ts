/**
 * Where the workers' output goes: line by line, each line prefixed with its
 * rank, to a stream or a callback.
 *
 * To a stream, backpressure holds: when the destination takes no more (a
 * slow reader, a full pipe), the workers' pipes are paused until it drains,
 * so the workers wait in their own writes and the launcher holds at most one
 * chunk per worker pipe beyond what the destination buffers. A destination
 * that breaks (EPIPE when `| head` has exited) is reported once; from then on
 * the output is read and dropped, so that no worker blocks on a pipe nobody
 * will read while the job is being stopped.
 */
import type { Readable, Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/** A stream (backpressure and errors handled), or a callback that takes every line at once. */
export type OutputSink = Writable | ((text: string) => void);

/** A worker's line longer than this is passed on in pieces rather than held. */
const MAX_PARTIAL_LINE = 64 * 1024;

export class OutputForwarder {
  readonly #write: (text: string, from?: Readable) => void;
  readonly #paused = new Set<Readable>();
  readonly #detach: () => void;
  #broken = false;

  /** `onBroken` is called once, with the error, when a stream destination fails. */
  constructor(sink: OutputSink, onBroken: (e: NodeJS.ErrnoException) => void) {
    if (typeof sink === 'function') {
      this.#write = (text) => sink(text);
      this.#detach = () => {};
      return;
    }
    const resume = () => {
      for (const s of this.#paused) s.resume();
      this.#paused.clear();
    };
    const onError = (e: NodeJS.ErrnoException) => {
      if (this.#broken) return;
      this.#broken = true;
      resume();
      onBroken(e);
    };
    sink.on('error', onError);
    sink.on('drain', resume);
    this.#detach = () => {
      sink.off('error', onError);
      sink.off('drain', resume);
    };
    this.#write = (text, from) => {
      if (this.#broken || sink.destroyed) return;
      if (!sink.write(text) && from) {
        from.pause();
        this.#paused.add(from);
      }
    };
  }

  /** Forwards `stream` line by line with `prefix`; a last partial line is flushed at its end. */
  pipe(stream: Readable, prefix: string): void {
    const decoder = new StringDecoder('utf8');
    let partial = '';
    stream.on('error', () => {}); // a read error on a worker pipe ends that pipe, nothing more
    stream.on('data', (chunk: Buffer) => {
      const lines = (partial + decoder.write(chunk)).split('\n');
      partial = lines.pop()!;
      if (partial.length > MAX_PARTIAL_LINE) {
        lines.push(partial);
        partial = '';
      }
      if (lines.length > 0) this.#write(lines.map((l) => `${prefix}${l}\n`).join(''), stream);
    });
    stream.once('close', () => {
      this.#paused.delete(stream);
      partial += decoder.end();
      if (partial) this.#write(`${prefix}${partial}\n`, stream);
      partial = '';
    });
  }

  /** A line of the launcher's own. */
  say(line: string): void {
    this.#write(`${line}\n`);
  }

  /** Stops listening to the destination (the workers are gone). */
  close(): void {
    this.#detach();
    this.#paused.clear();
  }
}
