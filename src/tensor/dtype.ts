import { WideepError } from '../errors.js';

/** Element types. bf16/f16 are held as raw bits in Uint16Array, fp8 e4m3 in Uint8Array. */
export type DType = 'bf16' | 'f16' | 'f32' | 'i32' | 'i64' | 'u8' | 'fp8e4m3';

export const DTYPES: readonly DType[] = ['bf16', 'f16', 'f32', 'i32', 'i64', 'u8', 'fp8e4m3'];

export type TypedArrayFor<D extends DType> = D extends 'bf16' | 'f16'
  ? Uint16Array
  : D extends 'f32'
    ? Float32Array
    : D extends 'i32'
      ? Int32Array
      : D extends 'i64'
        ? BigInt64Array
        : Uint8Array;

export type AnyTypedArray = Uint16Array | Float32Array | Int32Array | BigInt64Array | Uint8Array;

const ITEM_SIZE: Record<DType, number> = { bf16: 2, f16: 2, f32: 4, i32: 4, i64: 8, u8: 1, fp8e4m3: 1 };

/** Numeric codes shared with the addon (native/common/dtype.h). */
export const DTYPE_CODE: Record<DType, number> = { bf16: 0, f16: 1, f32: 2, i32: 3, i64: 4, u8: 5, fp8e4m3: 6 };

export function itemSize(dtype: DType): number {
  return ITEM_SIZE[dtype];
}

export function isDType(v: unknown): v is DType {
  return typeof v === 'string' && (DTYPES as readonly string[]).includes(v);
}

export function assertDType(what: string, v: unknown): DType {
  if (!isDType(v)) {
    throw new WideepError('ERR_DTYPE', `${what}: expected one of ${DTYPES.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v;
}

export function isFloatDType(d: DType): boolean {
  return d === 'bf16' || d === 'f16' || d === 'f32' || d === 'fp8e4m3';
}

/** A typed view of the right kind over `bytes` (which must be aligned to the item size). */
export function typedView(dtype: DType, buffer: ArrayBufferLike, byteOffset: number, length: number): AnyTypedArray {
  switch (dtype) {
    case 'bf16':
    case 'f16':
      return new Uint16Array(buffer, byteOffset, length);
    case 'f32':
      return new Float32Array(buffer, byteOffset, length);
    case 'i32':
      return new Int32Array(buffer, byteOffset, length);
    case 'i64':
      return new BigInt64Array(buffer, byteOffset, length);
    case 'u8':
    case 'fp8e4m3':
      return new Uint8Array(buffer, byteOffset, length);
  }
}

/** The dtype whose storage matches a typed array, where that is unambiguous. */
export function storageMatches(dtype: DType, a: ArrayBufferView): boolean {
  switch (dtype) {
    case 'bf16':
    case 'f16':
      return a instanceof Uint16Array;
    case 'f32':
      return a instanceof Float32Array;
    case 'i32':
      return a instanceof Int32Array;
    case 'i64':
      return a instanceof BigInt64Array;
    case 'u8':
    case 'fp8e4m3':
      return a instanceof Uint8Array;
  }
}
