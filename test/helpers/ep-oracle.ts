/**
 * A single-process oracle of the EP semantics (docs/architecture.md "EP semantics"),
 * written as plainly as possible and independent of src/ep: it loops over all
 * ranks' inputs at once, with no transport, no messages and no shared code
 * beyond the scalar conversions of src/tensor/convert.ts.
 */
import { bf16BitsToF32, f32ToBf16Bits, f32ToFp8E4m3Bits } from '../../src/tensor/convert.js';

export interface OracleInput {
  /** Raw bytes of x [T, H] (bf16 or fp8 bits). */
  x: Uint8Array;
  /** f32 [T, H/128] for fp8 x. */
  xScales?: Float32Array;
  /** [T * k]. */
  topkIdx: Int32Array;
  topkWeights: Float32Array;
  T: number;
}

export interface OracleShape {
  R: number;
  E: number;
  k: number;
  H: number;
  /** Bytes per element of x: 2 (bf16) or 1 (fp8). */
  itemBytes: number;
}

const ownerOf = (e: number, E: number, R: number) => Math.floor(e / (E / R));

/** The distinct experts token t selects (ignoring -1). */
export function expertsOf(input: OracleInput, k: number, t: number): Set<number> {
  const s = new Set<number>();
  for (let j = 0; j < k; j++) if (input.topkIdx[t * k + j]! >= 0) s.add(input.topkIdx[t * k + j]!);
  return s;
}

export function oracleLayout(input: OracleInput, R: number, E: number, k: number) {
  const numTokensPerRank = new Int32Array(R);
  const numTokensPerExpert = new Int32Array(E);
  const isTokenInRank = new Uint8Array(input.T * R);
  for (let t = 0; t < input.T; t++) {
    const ranks = new Set<number>();
    for (const e of expertsOf(input, k, t)) {
      numTokensPerExpert[e]!++;
      ranks.add(ownerOf(e, E, R));
    }
    for (const r of ranks) {
      numTokensPerRank[r]!++;
      isTokenInRank[t * R + r] = 1;
    }
  }
  return { numTokensPerRank, numTokensPerExpert, isTokenInRank };
}

export interface OracleReceived {
  /** Source (rank, token) of each received row. */
  rows: { src: number; t: number }[];
  recvX: Uint8Array;
  recvXScales: Float32Array | undefined;
  recvTopkIdx: Int32Array;
  recvTopkWeights: Float32Array;
  /** Before alignment. */
  numRecvTokensPerExpert: number[];
}

/** What each rank receives from a normal dispatch. */
export function oracleDispatch(inputs: readonly OracleInput[], shape: OracleShape): OracleReceived[] {
  const { R, E, k, H, itemBytes } = shape;
  const L = E / R;
  const rowBytes = H * itemBytes;
  const perBlock = H / 128;
  return Array.from({ length: R }, (_, r) => {
    const rows: { src: number; t: number }[] = [];
    for (let s = 0; s < R; s++) {
      for (let t = 0; t < inputs[s]!.T; t++) {
        if ([...expertsOf(inputs[s]!, k, t)].some((e) => ownerOf(e, E, R) === r)) rows.push({ src: s, t });
      }
    }
    const N = rows.length;
    const recvX = new Uint8Array(N * rowBytes);
    const scaled = inputs.some((i) => i.xScales !== undefined);
    const recvXScales = scaled ? new Float32Array(N * perBlock) : undefined;
    const recvTopkIdx = new Int32Array(N * k);
    const recvTopkWeights = new Float32Array(N * k);
    const numRecvTokensPerExpert = new Array<number>(L).fill(0);
    rows.forEach(({ src, t }, i) => {
      const input = inputs[src]!;
      recvX.set(input.x.subarray(t * rowBytes, (t + 1) * rowBytes), i * rowBytes);
      if (recvXScales) recvXScales.set(input.xScales!.subarray(t * perBlock, (t + 1) * perBlock), i * perBlock);
      const locals = new Set<number>();
      for (let j = 0; j < k; j++) {
        const e = input.topkIdx[t * k + j]!;
        const mine = e >= 0 && ownerOf(e, E, R) === r;
        recvTopkIdx[i * k + j] = mine ? e - r * L : -1;
        recvTopkWeights[i * k + j] = mine ? input.topkWeights[t * k + j]! : 0;
        if (mine) locals.add(e - r * L);
      }
      for (const l of locals) numRecvTokensPerExpert[l]!++;
    });
    return { rows, recvX, recvXScales, recvTopkIdx, recvTopkWeights, numRecvTokensPerExpert };
  });
}

/**
 * Normal combine: for each source rank s and token t, the float32 sum over
 * ranks r ascending of x_r[row of (s, t)], then + bias0, + bias1, rounded once.
 * `xs[r]` are bf16 bits [>= N_r, H]; `weights[r]` f32 [>= N_r, k].
 */
export function oracleCombine(
  received: readonly OracleReceived[],
  xs: readonly Uint16Array[],
  H: number,
  tokens: readonly number[],
  options: { weights?: readonly Float32Array[]; k?: number; bias?: readonly (readonly Uint16Array[])[] } = {},
): { combinedX: Uint16Array[]; combinedTopkWeights: Float32Array[] | undefined } {
  const R = received.length;
  const k = options.k ?? 0;
  const rowOf = received.map((rec) => new Map(rec.rows.map(({ src, t }, i) => [`${src},${t}`, i])));
  // rowsOf(s, t)[r]: the row of (s, t) on rank r, or undefined.
  const rowsOf = (s: number, t: number) => rowOf.map((m) => m.get(`${s},${t}`));
  const combinedX = tokens.map((T, s) => {
    const out = new Uint16Array(T * H);
    for (let t = 0; t < T; t++) {
      const rows = rowsOf(s, t);
      for (let h = 0; h < H; h++) {
        let acc = 0;
        for (let r = 0; r < R; r++) {
          const i = rows[r];
          if (i !== undefined) acc = Math.fround(acc + bf16BitsToF32(xs[r]![i * H + h]!));
        }
        for (const b of options.bias?.[s] ?? []) acc = Math.fround(acc + bf16BitsToF32(b[t * H + h]!));
        out[t * H + h] = f32ToBf16Bits(acc);
      }
    }
    return out;
  });
  const combinedTopkWeights = options.weights
    ? tokens.map((T, s) => {
        const out = new Float32Array(T * k);
        for (let t = 0; t < T; t++) {
          const rows = rowsOf(s, t);
          for (let j = 0; j < k; j++) {
            let acc = 0;
            for (let r = 0; r < R; r++) {
              const i = rows[r];
              if (i !== undefined) acc = Math.fround(acc + options.weights![r]![i * k + j]!);
            }
            out[t * k + j] = acc;
          }
        }
        return out;
      })
    : undefined;
  return { combinedX, combinedTopkWeights };
}

/** The fp8 cast of one row, written from the formula (log2/ceil for the power-of-two scale). */
export function oracleQuantizeRow(values: Float32Array, roundScale: boolean): { q: Uint8Array; scales: Float32Array } {
  const H = values.length;
  const q = new Uint8Array(H);
  const scales = new Float32Array(H / 128);
  for (let b = 0; b < H / 128; b++) {
    let amax = 0;
    for (let i = b * 128; i < (b + 1) * 128; i++) amax = Math.max(amax, Math.abs(values[i]!));
    amax = Math.max(amax, Math.fround(1e-4));
    let scale = Math.fround(amax / 448);
    let scaleInv = Math.fround(448 / amax);
    if (roundScale) {
      scale = 2 ** Math.ceil(Math.log2(scale));
      scaleInv = Math.fround(1 / scale);
    }
    scales[b] = scale;
    for (let i = b * 128; i < (b + 1) * 128; i++) q[i] = f32ToFp8E4m3Bits(Math.fround(values[i]! * scaleInv));
  }
  return { q, scales };
}

export interface OracleLowLatencyReceived {
  recvX: Uint8Array;
  recvXScales: Float32Array | undefined;
  recvCount: Int32Array;
  srcInfo: Int32Array;
  layoutRange: Int32Array;
}

/** Low-latency dispatch: per owner, expert-major slots ordered by source rank, then token. */
export function oracleLowLatencyDispatch(
  inputs: readonly OracleInput[],
  shape: Omit<OracleShape, 'itemBytes'> & { M: number; useFp8: boolean; roundScale: boolean },
): OracleLowLatencyReceived[] {
  const { R, E, k, H, M, useFp8, roundScale } = shape;
  const L = E / R;
  const RM = R * M;
  const rowBytes = useFp8 ? H : 2 * H;
  return Array.from({ length: R }, (_, o) => {
    const recvX = new Uint8Array(L * RM * rowBytes);
    const recvXScales = useFp8 ? new Float32Array((L * RM * H) / 128) : undefined;
    const recvCount = new Int32Array(L);
    const srcInfo = new Int32Array(L * RM).fill(-1);
    const layoutRange = new Int32Array(L * R * 2);
    for (let j = 0; j < L; j++) {
      const e = o * L + j;
      for (let s = 0; s < R; s++) {
        const begin = recvCount[j]!;
        const input = inputs[s]!;
        for (let t = 0; t < input.T; t++) {
          if (!expertsOf(input, k, t).has(e)) continue;
          const slot = j * RM + recvCount[j]!++;
          srcInfo[slot] = t;
          const row = input.x.subarray(t * 2 * H, (t + 1) * 2 * H);
          if (useFp8) {
            const bits = new Uint16Array(row.slice().buffer);
            const values = Float32Array.from(bits, (b) => bf16BitsToF32(b));
            const { q, scales } = oracleQuantizeRow(values, roundScale);
            recvX.set(q, slot * H);
            recvXScales!.set(scales, (slot * H) / 128);
          } else {
            recvX.set(row, slot * rowBytes);
          }
        }
        layoutRange[(j * R + s) * 2] = begin;
        layoutRange[(j * R + s) * 2 + 1] = recvCount[j]! - begin;
      }
    }
    return { recvX, recvXScales, recvCount, srcInfo, layoutRange };
  });
}

/**
 * Low-latency combine: out[t] = bf16(sum over owner ranks ascending of
 * partial[owner]), accumulated in float32, where partial[owner] = bf16(sum
 * over k ascending, skipping -1 and other owners' experts, of
 * fround(w * y_owner[j][slot of t])), also accumulated in float32.
 * `ys[o]`: bf16 bits [L, R*M, H]; `combine[s]`: that rank's topkIdx/weights.
 */
export function oracleLowLatencyCombine(
  dispatched: readonly OracleLowLatencyReceived[],
  ys: readonly Uint16Array[],
  combine: readonly { topkIdx: Int32Array; topkWeights: Float32Array; T: number }[],
  shape: { R: number; E: number; k: number; H: number; M: number },
): Uint16Array[] {
  const { R, E, k, H, M } = shape;
  const L = E / R;
  const RM = R * M;
  return combine.map(({ topkIdx, topkWeights, T }, s) => {
    const out = new Uint16Array(T * H);
    for (let t = 0; t < T; t++) {
      const acc = new Array<number>(H).fill(0);
      for (let owner = 0; owner < R; owner++) {
        const partial = new Array<number>(H).fill(0);
        let used = false;
        for (let j = 0; j < k; j++) {
          const e = topkIdx[t * k + j]!;
          if (e < 0) continue;
          const o = ownerOf(e, E, R);
          if (o !== owner) continue;
          const local = e - o * L;
          const d = dispatched[o]!;
          const begin = d.layoutRange[(local * R + s) * 2]!;
          const count = d.layoutRange[(local * R + s) * 2 + 1]!;
          let slot = -1;
          for (let i = begin; i < begin + count; i++) if (d.srcInfo[local * RM + i] === t) slot = local * RM + i;
          if (slot < 0) throw new Error(`oracle: token ${t} of rank ${s} has no slot in expert ${e}`);
          for (let h = 0; h < H; h++) partial[h] = Math.fround(partial[h]! + Math.fround(topkWeights[t * k + j]! * bf16BitsToF32(ys[o]![slot * H + h]!)));
          used = true;
        }
        if (!used) continue;
        for (let h = 0; h < H; h++) acc[h] = Math.fround(acc[h]! + bf16BitsToF32(f32ToBf16Bits(partial[h]!)));
      }
      for (let h = 0; h < H; h++) out[t * H + h] = f32ToBf16Bits(acc[h]!);
    }
    return out;
  });
}
