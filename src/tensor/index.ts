export { Tensor, type Device, type TensorOptions } from './tensor.js';
export { DTYPES, itemSize, isDType, type DType, type AnyTypedArray } from './dtype.js';
export {
  f32ToBf16Bits,
  bf16BitsToF32,
  f32ToF16Bits,
  f16BitsToF32,
  f32ToFp8E4m3Bits,
  fp8E4m3BitsToF32,
  roundToBf16,
  FP8_E4M3_MAX,
} from './convert.js';
