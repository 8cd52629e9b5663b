/**
 * FP8 expert weights on the host, as DeepSeek-V3's checkpoint stores them:
 * e4m3 values with one float32 scale per 128x128 block (the checkpoint's
 * `weight_scale_inv`: weight ≈ q * scale). The block scale is the
 * low-latency dispatch's rule applied to the block (fp8-quant.ts), so the
 * host and the GPU agree on every byte.
 */
import { FP8_BLOCK, fp8BlockScale } from '../ep/fp8-quant.js';
import { WideepError } from '../errors.js';
import { expertWeights, type ExpertWeights, type MoeLayerWeights } from '../simulation/weights.js';
import { f32ToFp8E4m3Bits, fp8E4m3BitsToF32 } from '../tensor/convert.js';

export interface Fp8Matrix {
  /** e4m3 bits, [rows, cols] row-major. */
  q: Uint8Array;
  /** [rows/128, cols/128]: the block scales. */
  scales: Float32Array;
}

/** Quantises a float32 matrix [rows, cols] (both multiples of 128) into 128x128-block fp8. */
export function quantizeWeightFp8(values: ArrayLike<number>, rows: number, cols: number): Fp8Matrix {
  if (rows % FP8_BLOCK !== 0 || cols % FP8_BLOCK !== 0 || values.length !== rows * cols) {
    throw new WideepError('ERR_SHAPE', `quantizeWeightFp8: expected [rows, cols] with both multiples of ${FP8_BLOCK} (${rows * cols} values), got [${rows}, ${cols}] and ${values.length} values`);
  }
  const [br, bc] = [rows / FP8_BLOCK, cols / FP8_BLOCK];
  const q = new Uint8Array(rows * cols);
  const scales = new Float32Array(br * bc);
  for (let i = 0; i < br; i++) {
    for (let j = 0; j < bc; j++) {
      const at = (r: number, c: number) => (i * FP8_BLOCK + r) * cols + j * FP8_BLOCK + c;
      let amax = 0;
      for (let r = 0; r < FP8_BLOCK; r++) for (let c = 0; c < FP8_BLOCK; c++) amax = Math.max(amax, Math.abs(values[at(r, c)]!));
      const { scale, scaleInv } = fp8BlockScale(amax, false);
      scales[i * bc + j] = scale;
      for (let r = 0; r < FP8_BLOCK; r++) for (let c = 0; c < FP8_BLOCK; c++) q[at(r, c)] = f32ToFp8E4m3Bits(Math.fround(values[at(r, c)]! * scaleInv));
    }
  }
  return { q, scales };
}

/** q * scale for every element of a block-quantised matrix [rows, cols]. */
export function dequantizeWeightFp8(m: Fp8Matrix, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const bc = cols / FP8_BLOCK;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[r * cols + c] = fp8E4m3BitsToF32(m.q[r * cols + c]!) * m.scales[Math.floor(r / FP8_BLOCK) * bc + Math.floor(c / FP8_BLOCK)]!;
  }
  return out;
}

/** One expert in fp8: w13 = [gate; up] as one [2I, H] matrix (as the device holds it), w2 = down [H, I]. */
export function quantizeExpertFp8(e: ExpertWeights): { w13: Fp8Matrix; w2: Fp8Matrix } {
  const { hidden: H, intermediate: I } = e;
  // gate and up are adjacent in `packed` ([gate; up; down]), so w13 is its first 2IH values.
  return { w13: quantizeWeightFp8(e.packed.subarray(0, 2 * I * H), 2 * I, H), w2: quantizeWeightFp8(e.down, H, I) };
}

const dequantized = new WeakMap<MoeLayerWeights, MoeLayerWeights>();

/**
 * The layer with its routed experts replaced by what their fp8 form holds
 * (quantised, then multiplied back): the weights an fp8 GPU layer built from
 * `weights` computes with. The gate and shared expert are unchanged (they
 * stay bf16 on the GPU). Memoised per weights object.
 */
export function fp8RoutedExperts(weights: MoeLayerWeights): MoeLayerWeights {
  let w = dequantized.get(weights);
  if (!w) {
    const experts = weights.experts.map((e) => {
      const { w13, w2 } = quantizeExpertFp8(e);
      const [H, I] = [e.hidden, e.intermediate];
      const packed = new Float32Array(3 * H * I);
      packed.set(dequantizeWeightFp8(w13, 2 * I, H), 0);
      packed.set(dequantizeWeightFp8(w2, H, I), 2 * H * I);
      return expertWeights(H, I, packed);
    });
    w = { ...weights, experts };
    dequantized.set(weights, w);
  }
  return w;
}
