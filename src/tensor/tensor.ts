import { WideepError, assertInteger, invalidArg } from '../errors.js';
import { parseCudaDevice } from '../cuda/device.js';
import {
  DeviceAllocation,
  copyDeviceToDevice,
  copyDeviceToHost,
  copyHostToDevice,
  memsetDevice,
  type DeviceStorage,
} from '../cuda/memory.js';
import { defaultStream, type Stream } from '../cuda/stream.js';
import {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  f32ToFp8E4m3Bits,
  fp8E4m3BitsToF32,
} from './convert.js';
import { assertDType, itemSize, storageMatches, typedView, type AnyTypedArray, type DType } from './dtype.js';

export type Device = 'cpu' | `cuda:${number}`;

interface HostStorage {
  readonly kind: 'host';
  readonly buffer: ArrayBufferLike;
  readonly byteOffset: number;
  readonly byteLength: number;
  closed: boolean;
}

type Storage = HostStorage | { readonly kind: 'device'; readonly device: DeviceStorage };

export interface TensorOptions {
  device?: Device;
  /** Stream that orders allocation and copies (default: the device's default stream). */
  stream?: Stream;
}

function checkShape(shape: readonly number[]): number[] {
  if (!Array.isArray(shape)) throw invalidArg('shape', 'an array of non-negative integers', shape);
  return shape.map((d, i) => assertInteger(`shape[${i}]`, d, 0));
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * An n-dimensional, contiguous, row-major array on the host or on a GPU.
 * Host data is a TypedArray (bf16/f16 as raw Uint16 bits, fp8 as Uint8 bits).
 * Views share their parent's storage and never free it; only the owner does.
 */
export class Tensor implements Disposable {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly device: Device;
  readonly #storage: Storage;
  readonly #byteOffset: number;
  readonly #owns: boolean;

  private constructor(storage: Storage, dtype: DType, shape: readonly number[], byteOffset: number, owns: boolean) {
    this.#storage = storage;
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.#byteOffset = byteOffset;
    this.#owns = owns;
    this.device = storage.kind === 'host' ? 'cpu' : `cuda:${storage.device.device}`;
  }

  // ---- construction -------------------------------------------------------

  /** A zero-filled host tensor, or an uninitialised device tensor. */
  static empty(shape: readonly number[], dtype: DType, options: TensorOptions = {}): Tensor {
    assertDType('dtype', dtype);
    const dims = checkShape(shape);
    const bytes = product(dims) * itemSize(dtype);
    const device = options.device ?? 'cpu';
    if (device === 'cpu') {
      const buffer = new ArrayBuffer(bytes);
      return new Tensor({ kind: 'host', buffer, byteOffset: 0, byteLength: bytes, closed: false }, dtype, dims, 0, true);
    }
    const d = parseCudaDevice(device);
    const stream = options.stream ?? defaultStream(d);
    if (stream.device !== d) throw invalidArg('stream', `a stream on cuda:${d}`, `a stream on cuda:${stream.device}`);
    const alloc = new DeviceAllocation(bytes, stream);
    return new Tensor({ kind: 'device', device: alloc }, dtype, dims, 0, true);
  }

  /** A zero-filled tensor on any device. */
  static zeros(shape: readonly number[], dtype: DType, options: TensorOptions = {}): Tensor {
    const t = Tensor.empty(shape, dtype, options);
    if (t.device !== 'cpu') t.fillBytes(0, options.stream);
    return t;
  }

  /**
   * Wraps host data. A TypedArray of the dtype's storage kind is used without a
   * copy; plain numbers are converted (floats rounded to nearest even).
   */
  static from(data: AnyTypedArray | readonly number[] | readonly bigint[], options: { shape?: readonly number[]; dtype?: DType } = {}): Tensor {
    const dtype = options.dtype ?? inferDType(data);
    assertDType('dtype', dtype);
    const length = (data as ArrayLike<unknown>).length;
    const shape = checkShape(options.shape ?? [length]);
    if (product(shape) !== length) {
      throw new WideepError('ERR_SHAPE', `shape [${shape}] holds ${product(shape)} elements, but ${length} were given`);
    }
    if (ArrayBuffer.isView(data)) {
      if (!storageMatches(dtype, data)) {
        throw new WideepError('ERR_DTYPE', `a ${data.constructor.name} cannot hold ${dtype} data without conversion; use Tensor.fromNumbers`);
      }
      const storage: HostStorage = { kind: 'host', buffer: data.buffer, byteOffset: data.byteOffset, byteLength: data.byteLength, closed: false };
      return new Tensor(storage, dtype, shape, 0, true);
    }
    return Tensor.fromNumbers(data as readonly (number | bigint)[], shape, dtype);
  }

  /** Converts numbers to a host tensor of `dtype` (floats round to nearest even, ints must be exact). */
  static fromNumbers(values: ArrayLike<number | bigint>, shape: readonly number[], dtype: DType): Tensor {
    const t = Tensor.empty(shape, dtype);
    if (t.numel !== values.length) {
      throw new WideepError('ERR_SHAPE', `shape [${shape}] holds ${t.numel} elements, but ${values.length} were given`);
    }
    const out = t.data;
    const enc = encoder(dtype);
    for (let i = 0; i < values.length; i++) (out as unknown as (number | bigint)[])[i] = enc(values[i]!);
    return t;
  }

  /** @internal A tensor over existing device storage (EP buffer ranges). */
  static fromDeviceStorage(storage: DeviceStorage, dtype: DType, shape: readonly number[], byteOffset = 0, owns = true): Tensor {
    const dims = checkShape(shape);
    if (byteOffset + product(dims) * itemSize(dtype) > storage.byteLength) {
      throw new WideepError('ERR_SHAPE', `tensor of shape [${dims}] ${dtype} at offset ${byteOffset} overruns its ${storage.byteLength}-byte storage`);
    }
    return new Tensor({ kind: 'device', device: storage }, dtype, dims, byteOffset, owns);
  }

  // ---- properties ---------------------------------------------------------

  get numel(): number {
    return product(this.shape);
  }

  get ndim(): number {
    return this.shape.length;
  }

  get byteLength(): number {
    return this.numel * itemSize(this.dtype);
  }

  get isHost(): boolean {
    return this.#storage.kind === 'host';
  }

  get closed(): boolean {
    return this.#storage.kind === 'host' ? this.#storage.closed : this.#storage.device.closed;
  }

  /** Device index for GPU tensors. */
  get deviceIndex(): number {
    if (this.#storage.kind === 'host') throw new WideepError('ERR_INVALID_ARG', 'a host tensor has no device index');
    return this.#storage.device.device;
  }

  /** Raw storage view of a host tensor (bf16/f16 as bits, fp8 as bits). */
  get data(): AnyTypedArray {
    const s = this.#hostStorage();
    return typedView(this.dtype, s.buffer, s.byteOffset + this.#byteOffset, this.numel);
  }

  /** Address of the first element of a device tensor. */
  get ptr(): bigint {
    const s = this.#storage;
    if (s.kind === 'host') throw new WideepError('ERR_INVALID_ARG', 'ptr: this is a host tensor');
    if (s.device.closed) throw new WideepError('ERR_CLOSED', 'tensor is closed');
    // Most tensors start their storage: no BigInt to make on a hot path.
    return this.#byteOffset === 0 ? s.device.ptr : s.device.ptr + BigInt(this.#byteOffset);
  }

  // ---- views --------------------------------------------------------------

  reshape(shape: readonly number[]): Tensor {
    this.#checkOpen();
    const dims = [...shape];
    const infer = dims.indexOf(-1);
    if (infer >= 0) {
      const rest = product(dims.filter((_, i) => i !== infer));
      dims[infer] = rest === 0 ? 0 : this.numel / rest;
    }
    checkShape(dims);
    if (product(dims) !== this.numel) {
      throw new WideepError('ERR_SHAPE', `cannot reshape [${this.shape}] (${this.numel} elements) to [${shape}]`);
    }
    return new Tensor(this.#storage, this.dtype, dims, this.#byteOffset, false);
  }

  /** Rows [start, start + length) of the first dimension, as a view. */
  narrow(start: number, length: number): Tensor {
    this.#checkOpen();
    const rows = this.shape[0] ?? 0;
    assertInteger('start', start, 0, rows);
    assertInteger('length', length, 0, rows - start);
    const rowBytes = this.shape.length === 0 ? 0 : product(this.shape.slice(1)) * itemSize(this.dtype);
    return new Tensor(this.#storage, this.dtype, [length, ...this.shape.slice(1)], this.#byteOffset + start * rowBytes, false);
  }

  // ---- host conversions ---------------------------------------------------

  /** Decoded float32 values of a host tensor. */
  toFloat32(): Float32Array {
    const d = this.data;
    const out = new Float32Array(this.numel);
    const dec = decoder(this.dtype);
    for (let i = 0; i < out.length; i++) out[i] = dec(d[i]!);
    return out;
  }

  /** Values as JS numbers (i64 converted, must be safe integers). */
  toNumbers(): number[] {
    const d = this.data;
    const dec = decoder(this.dtype);
    return Array.from(d as ArrayLike<number | bigint>, (v) => dec(v));
  }

  // ---- device transfers ---------------------------------------------------

  /** A copy on `device`; resolves once the copy has completed. */
  async to(device: Device, options: { stream?: Stream } = {}): Promise<Tensor> {
    this.#checkOpen();
    if (device === 'cpu') {
      if (this.isHost) return this.clone();
      const out = Tensor.empty(this.shape, this.dtype);
      const stream = options.stream ?? defaultStream(this.deviceIndex);
      await copyDeviceToHost(out.data, this.ptr, stream);
      return out;
    }
    const out = Tensor.empty(this.shape, this.dtype, { device, stream: options.stream });
    const stream = options.stream ?? defaultStream(out.deviceIndex);
    if (this.isHost) {
      await copyHostToDevice(out.ptr, this.data, stream);
    } else {
      copyDeviceToDevice(out.ptr, this.ptr, this.byteLength, stream);
      await stream.synchronize();
    }
    return out;
  }

  /** Host copy of this tensor. */
  cpu(options: { stream?: Stream } = {}): Promise<Tensor> {
    return this.to('cpu', options);
  }

  /** Copies `src` (same dtype and element count, any device pairing except host to host). */
  async copyFrom(src: Tensor, options: { stream?: Stream } = {}): Promise<void> {
    this.#checkOpen();
    if (src.dtype !== this.dtype || src.numel !== this.numel) {
      throw new WideepError('ERR_SHAPE', `copyFrom: expected ${this.dtype}[${this.shape}], got ${src.dtype}[${src.shape}]`);
    }
    if (this.isHost && src.isHost) {
      new Uint8Array(this.data.buffer, this.data.byteOffset, this.byteLength).set(
        new Uint8Array(src.data.buffer, src.data.byteOffset, src.byteLength),
      );
      return;
    }
    const stream = options.stream ?? defaultStream(this.isHost ? src.deviceIndex : this.deviceIndex);
    if (this.isHost) return copyDeviceToHost(this.data, src.ptr, stream);
    if (src.isHost) return copyHostToDevice(this.ptr, src.data, stream);
    copyDeviceToDevice(this.ptr, src.ptr, this.byteLength, stream);
  }

  /** Sets every byte to `value` (e.g. 0xff to poison outputs before a run). Device fills are stream-ordered. */
  fillBytes(value: number, stream?: Stream): this {
    assertInteger('value', value, 0, 255);
    if (this.isHost) {
      const d = this.data;
      new Uint8Array(d.buffer, d.byteOffset, this.byteLength).fill(value);
    } else {
      memsetDevice(this.ptr, value, this.byteLength, stream ?? defaultStream(this.deviceIndex));
    }
    return this;
  }

  /** A host copy (host tensors only; use to('cpu') for device tensors). */
  clone(): Tensor {
    const src = this.data;
    const out = Tensor.empty(this.shape, this.dtype);
    new Uint8Array(out.data.buffer).set(new Uint8Array(src.buffer, src.byteOffset, this.byteLength));
    return out;
  }

  // ---- lifetime -----------------------------------------------------------

  /**
   * Releases the storage if this tensor owns it. Idempotent; views only detach.
   * Device memory is freed after the work queued on `stream` (default: the
   * stream it was allocated on), which must be the last to use it.
   */
  close(stream?: Stream): void {
    if (!this.#owns) return;
    const s = this.#storage;
    if (s.kind === 'host') s.closed = true;
    else s.device.close(stream);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  toString(): string {
    return `Tensor(${this.dtype}[${this.shape.join(', ')}], ${this.device}${this.closed ? ', closed' : ''})`;
  }

  #hostStorage(): HostStorage {
    const s = this.#storage;
    if (s.kind !== 'host') {
      throw new WideepError('ERR_INVALID_ARG', `${this} lives on the GPU; copy it with await tensor.cpu() first`);
    }
    if (s.closed) throw new WideepError('ERR_CLOSED', 'tensor is closed');
    return s;
  }

  #checkOpen(): void {
    if (this.closed) throw new WideepError('ERR_CLOSED', 'tensor is closed');
  }
}

function inferDType(data: unknown): DType {
  if (data instanceof Float32Array) return 'f32';
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof BigInt64Array) return 'i64';
  if (data instanceof Uint8Array) return 'u8';
  if (Array.isArray(data) && typeof data[0] === 'bigint') return 'i64';
  if (Array.isArray(data)) return 'f32';
  throw new WideepError('ERR_DTYPE', 'cannot infer the dtype of this data; pass options.dtype');
}

function encoder(dtype: DType): (v: number | bigint) => number | bigint {
  switch (dtype) {
    case 'bf16':
      return (v) => f32ToBf16Bits(Number(v));
    case 'f16':
      return (v) => f32ToF16Bits(Number(v));
    case 'fp8e4m3':
      return (v) => f32ToFp8E4m3Bits(Number(v));
    case 'f32':
      return (v) => Number(v);
    case 'i64':
      return (v) => {
        if (typeof v === 'number' && !Number.isSafeInteger(v)) throw invalidArg('i64 value', 'a safe integer', v);
        return BigInt(v);
      };
    case 'i32':
    case 'u8':
      return (v) => {
        const n = Number(v);
        if (!Number.isInteger(n)) throw invalidArg(`${dtype} value`, 'an integer', v);
        return n;
      };
  }
}

function decoder(dtype: DType): (v: number | bigint) => number {
  switch (dtype) {
    case 'bf16':
      return (v) => bf16BitsToF32(v as number);
    case 'f16':
      return (v) => f16BitsToF32(v as number);
    case 'fp8e4m3':
      return (v) => fp8E4m3BitsToF32(v as number);
    default:
      return (v) => Number(v);
  }
}
