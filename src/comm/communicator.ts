import { WideepError, assertInteger, invalidArg } from '../errors.js';
import { callNative, awaitNative } from '../cuda/call.js';
import { defaultStream, type Stream } from '../cuda/stream.js';
import type { ProcessGroup } from '../runtime/types.js';
import { requireCuda, type CudaBinding } from '../native/index.js';
import type { DType } from '../tensor/dtype.js';
import { Tensor } from '../tensor/tensor.js';
import { loadNccl } from './nccl-library.js';

export type ReduceOp = 'sum' | 'prod' | 'max' | 'min' | 'avg';

const NCCL_DTYPE: Record<DType, number> = { u8: 1, i32: 2, i64: 4, f16: 6, f32: 7, bf16: 9, fp8e4m3: 10 };
const NCCL_OP: Record<ReduceOp, number> = { sum: 0, prod: 1, max: 2, min: 3, avg: 4 };

/** The native communicator object's shape (see native/nccl/communicator.cc). */
interface NativeCommunicator {
  readonly rank: number;
  readonly size: number;
  readonly device: number;
  readonly closed: boolean;
  split(color: number, key: number): Promise<NativeCommunicator | undefined>;
  allReduce(send: bigint, recv: bigint, count: number, dtype: number, op: number, stream: unknown): void;
  broadcast(send: bigint, recv: bigint, count: number, dtype: number, root: number, stream: unknown): void;
  allGather(send: bigint, recv: bigint, sendCount: number, dtype: number, stream: unknown): void;
  reduceScatter(send: bigint, recv: bigint, recvCount: number, dtype: number, op: number, stream: unknown): void;
  sendRecv(ops: BigInt64Array, dtype: number, stream: unknown): void;
  wait(stream: unknown): Promise<void>;
  error(): { code: string; message: string } | null;
  close(): void;
}

interface NativeCommunicatorClass {
  getUniqueId(): Uint8Array;
  init(id: Uint8Array, nranks: number, rank: number, device: number, timeoutMs: number, minCtas: number, maxCtas: number): Promise<NativeCommunicator>;
}

function nativeClass(cuda: CudaBinding): NativeCommunicatorClass {
  return (cuda as unknown as { Communicator: NativeCommunicatorClass }).Communicator;
}

export interface CommunicatorOptions {
  /** Bound on every wait: init, splits and each operation's run time. Default 300 s. */
  timeoutMs?: number;
  /** Store key namespace, when several jobs share one store. */
  name?: string;
  minCtas?: number;
  maxCtas?: number;
}

export interface P2POp {
  kind: 'send' | 'recv';
  peer: number;
  tensor: Tensor;
}

let creations = 0;

/**
 * An NCCL communicator. Operations are enqueued on a Stream and return at
 * once; `wait()` resolves when they are done, or rejects with the error that
 * made the watchdog abort the communicator (a dead peer gives ERR_TIMEOUT).
 */
export class Communicator implements Disposable {
  readonly rank: number;
  readonly size: number;
  readonly device: number;
  #native: NativeCommunicator | undefined;
  #busy = false;

  private constructor(n: NativeCommunicator) {
    this.#native = n;
    this.rank = n.rank;
    this.size = n.size;
    this.device = n.device;
  }

  /** Creates one communicator over all ranks of `group`: rank 0 publishes the unique id through the store. */
  static async create(group: ProcessGroup, options: CommunicatorOptions = {}): Promise<Communicator> {
    if (group.device === undefined) {
      throw new WideepError('ERR_NO_GPU', `rank ${group.rank} has no GPU, so it cannot join an NCCL communicator`);
    }
    loadNccl();
    const cls = nativeClass(requireCuda('Communicator'));
    const timeoutMs = options.timeoutMs ?? 300_000;
    const key = `wideep/nccl/${options.name ?? 'world'}/${creations++}/unique-id`;
    let id: Uint8Array;
    if (group.rank === 0) {
      id = callNative(() => cls.getUniqueId());
      await group.store.set(key, id);
    } else {
      id = await group.store.get(key, { timeoutMs });
    }
    return Communicator.fromUniqueId(id, group.worldSize, group.rank, group.device, options);
  }

  /** Joins the communicator named by a unique id that every rank received some other way. */
  static async fromUniqueId(id: Uint8Array, size: number, rank: number, device: number, options: CommunicatorOptions = {}): Promise<Communicator> {
    assertInteger('size', size, 1);
    assertInteger('rank', rank, 0, size - 1);
    if (!(id instanceof Uint8Array) || id.byteLength !== 128) throw invalidArg('id', 'a 128-byte Uint8Array', id);
    loadNccl();
    const cls = nativeClass(requireCuda('Communicator'));
    const n = await awaitNative(() =>
      cls.init(id, size, rank, device, options.timeoutMs ?? 300_000, options.minCtas ?? 0, options.maxCtas ?? 0),
    );
    return new Communicator(n);
  }

  get closed(): boolean {
    return this.#native === undefined;
  }

  /** The error that aborted this communicator, if any. */
  get error(): WideepError | undefined {
    const e = this.#native?.error();
    return e ? new WideepError(e.code as WideepError['code'], e.message) : undefined;
  }

  /** Ranks with the same color form a new communicator, ordered by key; a negative color joins none. */
  async split(color: number, key = this.rank): Promise<Communicator | undefined> {
    const n = this.#live();
    this.#busy = true;
    try {
      const child = await awaitNative(() => n.split(color < 0 ? -1 : color, key));
      return child ? new Communicator(child) : undefined;
    } finally {
      this.#busy = false;
    }
  }

  allReduce(tensor: Tensor, options: { op?: ReduceOp; out?: Tensor; stream?: Stream } = {}): Tensor {
    const out = options.out ?? tensor;
    this.#checkSame('allReduce', tensor, out);
    const op = NCCL_OP[options.op ?? 'sum'];
    if (op === undefined) throw invalidArg('op', "'sum', 'prod', 'max', 'min' or 'avg'", options.op);
    const n = this.#live();
    const s = this.#stream(options.stream);
    callNative(() => n.allReduce(tensor.ptr, out.ptr, tensor.numel, NCCL_DTYPE[tensor.dtype], op, s.native));
    return out;
  }

  broadcast(tensor: Tensor, root: number, options: { out?: Tensor; stream?: Stream } = {}): Tensor {
    const out = options.out ?? tensor;
    this.#checkSame('broadcast', tensor, out);
    assertInteger('root', root, 0, this.size - 1);
    const n = this.#live();
    const s = this.#stream(options.stream);
    callNative(() => n.broadcast(tensor.ptr, out.ptr, tensor.numel, NCCL_DTYPE[tensor.dtype], root, s.native));
    return out;
  }

  /** `out` holds `size` copies of `input`'s shape, rank-major. */
  allGather(input: Tensor, out: Tensor, options: { stream?: Stream } = {}): Tensor {
    this.#checkDevice('allGather', input, out);
    this.#checkRatio('allGather', out, input, this.size);
    const n = this.#live();
    const s = this.#stream(options.stream);
    callNative(() => n.allGather(input.ptr, out.ptr, input.numel, NCCL_DTYPE[input.dtype], s.native));
    return out;
  }

  /** `input` holds `size` blocks; rank i receives the reduction of block i. */
  reduceScatter(input: Tensor, out: Tensor, options: { op?: ReduceOp; stream?: Stream } = {}): Tensor {
    this.#checkDevice('reduceScatter', input, out);
    this.#checkRatio('reduceScatter', input, out, this.size);
    const op = NCCL_OP[options.op ?? 'sum'];
    if (op === undefined) throw invalidArg('op', "'sum', 'prod', 'max', 'min' or 'avg'", options.op);
    const n = this.#live();
    const s = this.#stream(options.stream);
    callNative(() => n.reduceScatter(input.ptr, out.ptr, out.numel, NCCL_DTYPE[input.dtype], op, s.native));
    return out;
  }

  /**
   * Point-to-point operations issued as one NCCL group (no ordering
   * deadlocks). Tensors move as their bytes, so one group may mix dtypes
   * (fp8 weights with their f32 scales) and needs no NCCL fp8 type; a send
   * and the receive it meets must hold the same number of bytes.
   */
  sendRecv(ops: readonly P2POp[], options: { stream?: Stream } = {}): void {
    if (ops.length === 0) return;
    const packed = new BigInt64Array(ops.length * 4);
    ops.forEach((o, i) => {
      if (o.kind !== 'send' && o.kind !== 'recv') throw invalidArg(`ops[${i}].kind`, "'send' or 'recv'", o.kind);
      assertInteger(`ops[${i}].peer`, o.peer, 0, this.size - 1);
      this.#checkDevice('sendRecv', o.tensor);
      packed.set([o.kind === 'send' ? 0n : 1n, BigInt(o.peer), o.tensor.ptr, BigInt(o.tensor.byteLength)], i * 4);
    });
    const n = this.#live();
    const s = this.#stream(options.stream);
    callNative(() => n.sendRecv(packed, NCCL_DTYPE.u8, s.native));
  }

  send(tensor: Tensor, peer: number, options: { stream?: Stream } = {}): void {
    this.sendRecv([{ kind: 'send', peer, tensor }], options);
  }

  recv(tensor: Tensor, peer: number, options: { stream?: Stream } = {}): void {
    this.sendRecv([{ kind: 'recv', peer, tensor }], options);
  }

  /** Equal all-to-all: `input`'s first dimension is split into `size` equal blocks; block j goes to rank j. */
  allToAll(input: Tensor, out: Tensor, options: { stream?: Stream } = {}): Tensor {
    this.#checkSame('allToAll', input, out);
    const rows = input.shape[0] ?? 0;
    if (rows % this.size !== 0) {
      throw new WideepError('ERR_SHAPE', `allToAll: the first dimension (${rows}) must be divisible by the world size (${this.size})`);
    }
    const per = rows / this.size;
    const counts = new Array<number>(this.size).fill(per);
    return this.allToAllv(input, counts, out, counts, options);
  }

  /** Uneven all-to-all over rows of the first dimension: sendCounts[j] rows go to rank j, recvCounts[i] rows come from rank i. */
  allToAllv(input: Tensor, sendCounts: readonly number[], out: Tensor, recvCounts: readonly number[], options: { stream?: Stream } = {}): Tensor {
    this.#checkDevice('allToAllv', input, out);
    if (input.dtype !== out.dtype) throw new WideepError('ERR_DTYPE', `allToAllv: input is ${input.dtype} but out is ${out.dtype}`);
    this.#checkCounts('sendCounts', sendCounts, input);
    this.#checkCounts('recvCounts', recvCounts, out);
    const ops: P2POp[] = [];
    let sOff = 0;
    let rOff = 0;
    for (let p = 0; p < this.size; p++) {
      if (sendCounts[p]! > 0) ops.push({ kind: 'send', peer: p, tensor: input.narrow(sOff, sendCounts[p]!) });
      if (recvCounts[p]! > 0) ops.push({ kind: 'recv', peer: p, tensor: out.narrow(rOff, recvCounts[p]!) });
      sOff += sendCounts[p]!;
      rOff += recvCounts[p]!;
    }
    this.sendRecv(ops, options);
    return out;
  }

  /** Resolves once everything enqueued so far on `stream` is done; rejects if the communicator was aborted. */
  wait(options: { stream?: Stream } = {}): Promise<void> {
    const n = this.#live();
    const s = this.#stream(options.stream);
    return awaitNative(() => n.wait(s.native));
  }

  /** Every rank reaches this point (an all-reduce of one value) before any continues. */
  async barrier(options: { stream?: Stream } = {}): Promise<void> {
    const s = this.#stream(options.stream);
    const one = Tensor.zeros([1], 'i32', { device: `cuda:${this.device}`, stream: s });
    try {
      this.allReduce(one, { stream: s });
      await this.wait({ stream: s });
    } finally {
      one.close();
    }
  }

  /** Aborts anything in flight and frees the communicator. Idempotent. */
  close(): void {
    this.#native?.close();
    this.#native = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #live(): NativeCommunicator {
    if (!this.#native) throw new WideepError('ERR_CLOSED', 'communicator is closed');
    if (this.#busy) throw new WideepError('ERR_BUSY', 'communicator is being split; await split() before using it');
    const e = this.error;
    if (e) throw e;
    return this.#native;
  }

  #stream(stream: Stream | undefined): Stream {
    const s = stream ?? defaultStream(this.device);
    if (s.device !== this.device) throw invalidArg('stream', `a stream on cuda:${this.device}`, `a stream on cuda:${s.device}`);
    return s;
  }

  #checkDevice(what: string, ...tensors: Tensor[]): void {
    for (const t of tensors) {
      if (t.device !== `cuda:${this.device}`) {
        throw invalidArg(`${what}: tensor`, `a tensor on cuda:${this.device}`, t.toString());
      }
    }
  }

  #checkSame(what: string, a: Tensor, b: Tensor): void {
    this.#checkDevice(what, a, b);
    if (a.dtype !== b.dtype || a.numel !== b.numel) {
      throw new WideepError('ERR_SHAPE', `${what}: out must match the input (${a.dtype}[${a.shape}]), got ${b.dtype}[${b.shape}]`);
    }
  }

  #checkRatio(what: string, big: Tensor, small: Tensor, ratio: number): void {
    if (big.dtype !== small.dtype) throw new WideepError('ERR_DTYPE', `${what}: dtypes differ (${big.dtype} vs ${small.dtype})`);
    if (big.numel !== small.numel * ratio) {
      throw new WideepError('ERR_SHAPE', `${what}: expected ${small.numel * ratio} elements (${ratio} × ${small.numel}), got ${big.numel}`);
    }
  }

  #checkCounts(what: string, counts: readonly number[], t: Tensor): void {
    if (!Array.isArray(counts) || counts.length !== this.size) throw invalidArg(what, `an array of ${this.size} row counts`, counts);
    const total = counts.reduce((a, c, i) => a + assertInteger(`${what}[${i}]`, c, 0), 0);
    if (total > (t.shape[0] ?? 0)) {
      throw new WideepError('ERR_SHAPE', `${what} add up to ${total} rows but the tensor has ${t.shape[0] ?? 0}`);
    }
  }
}
