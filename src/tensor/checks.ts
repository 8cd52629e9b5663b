/**
 * Argument checks for operations on device tensors: each names the call, the
 * argument, what was expected and what was given, and throws before anything
 * is enqueued.
 */
import { Stream, defaultStream } from '../cuda/stream.js';
import { WideepError, invalidArg } from '../errors.js';
import type { DType } from './dtype.js';
import { Tensor } from './tensor.js';

/** A dimension: a required size, or null for any size. */
export type DimSpec = number | null;

/** An open device tensor on `device` (or on any GPU when `device` is undefined); returns it. */
export function deviceTensor(where: string, name: string, v: unknown, device?: number): Tensor {
  if (!(v instanceof Tensor)) throw invalidArg(`${where}: ${name}`, 'a Tensor', v);
  if (v.closed) throw new WideepError('ERR_CLOSED', `${where}: ${name} is closed`);
  if (v.isHost) throw new WideepError('ERR_INVALID_ARG', `${where}: ${name}: expected a tensor on a GPU, got a host tensor (copy it with .to('cuda:N'))`);
  if (device !== undefined && v.deviceIndex !== device) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: ${name}: expected a tensor on cuda:${device}, got one on ${v.device}`);
  }
  return v;
}

export function expectDType(where: string, name: string, t: Tensor, allowed: readonly DType[]): void {
  if (!allowed.includes(t.dtype)) {
    throw new WideepError('ERR_DTYPE', `${where}: ${name}: expected dtype ${allowed.join(' or ')}, got ${t.dtype}`);
  }
}

/** Checks rank and the sizes given; `labels` name the dimensions in the message. */
export function expectShape(where: string, name: string, t: Tensor, labels: readonly string[], dims: readonly DimSpec[]): void {
  const bad = t.ndim !== dims.length || dims.some((d, i) => d !== null && t.shape[i] !== d);
  if (bad) {
    const want = dims.map((d, i) => (d === null ? labels[i] : `${labels[i]}=${d}`)).join(', ');
    throw new WideepError('ERR_SHAPE', `${where}: ${name}: expected shape [${want}], got [${t.shape.join(', ')}]`);
  }
}

/** Kernels and cuBLASLt read rows as 16-byte vectors; a misaligned view would fault on the GPU. */
export function expectAligned16(where: string, name: string, t: Tensor): void {
  if (t.ptr % 16n !== 0n) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: ${name}: device data must start on a 16-byte boundary; this view starts ${t.ptr % 16n} bytes past one`);
  }
}

export function expectFinite(where: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidArg(`${where}: ${name}`, 'a finite number', v);
  return v;
}

/** The stream a call runs on: the one given (on the tensors' device) or the device's default. */
export function streamFor(where: string, device: number, stream: unknown): Stream {
  if (stream === undefined) return defaultStream(device);
  if (!(stream instanceof Stream)) throw invalidArg(`${where}: stream`, 'a Stream', stream);
  if (stream.closed) throw new WideepError('ERR_CLOSED', `${where}: stream is closed`);
  if (stream.device !== device) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: stream: expected a stream on cuda:${device} (the tensors' device), got one on cuda:${stream.device}`);
  }
  return stream;
}
