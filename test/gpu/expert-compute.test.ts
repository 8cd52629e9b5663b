/**
 * Expert compute on one GPU against host references on fresh random inputs,
 * every output poisoned before its launch: cuBLASLt found and loaded, the
 * BF16 and FP8 block-scaled GEMMs (dense and grouped, both cuBLASLt
 * strategies and wideep's masked fp8 kernel, empty and one-row experts, counts
 * off every tile size), SwiGLU with fp8
 * re-quantisation, the router's fused top-k against the cpu pipeline's gate
 * id for id (DeepSeek-V3 and Qwen3 settings, ties, replica maps, load
 * counts), the permutation around a normal-mode dispatch, device fills, and a
 * captured graph replaying the whole expert path.
 */
import { describe, expect, it } from 'vitest';

import { groupedLinear, linear } from '../../src/blas/gemm.js';
import { loadCublasLt } from '../../src/blas/library.js';
import { Graph } from '../../src/cuda/graph.js';
import { Stream } from '../../src/cuda/stream.js';
import { dequantizeFp8, quantizeBf16RowsFp8 } from '../../src/ep/fp8-quant.js';
import { swiglu } from '../../src/moe/activation.js';
import { expertsForward } from '../../src/moe/experts.js';
import { dequantizeWeightFp8 } from '../../src/moe/fp8-weights.js';
import { quantizeRowsFp8 } from '../../src/moe/quantize.js';
import { permuteToExperts, unpermuteFromExperts } from '../../src/moe/permute.js';
import { route, routerTopk, type RoutingConfig } from '../../src/moe/router.js';
import { groupedTopk } from '../../src/simulation/gate.js';
import { f32ToBf16Bits, f32ToFp8E4m3Bits, fp8E4m3BitsToF32 } from '../../src/tensor/convert.js';
import { counterUniform } from '../../src/tensor/counter-hash.js';
import { fillValue, randomTensor } from '../../src/tensor/fill.js';
import { Tensor } from '../../src/tensor/tensor.js';
import { assertBitwiseEqual } from '../helpers/assert.js';
import { assertClose, refLinear, refSwiglu } from '../helpers/moe-reference.js';
import { SeededRandom, randomBf16 } from '../helpers/random.js';
import { gpus, skipReason } from './gpu-env.js';

const DEV = 'cuda:0' as const;
const BF16_TOL = { rel: 2 ** -7, abs: 1e-6 };
const NAN_F32 = 0xff;

const DEEPSEEK_V3: RoutingConfig = {
  numRoutedExperts: 256,
  topK: 8,
  numExpertGroups: 8,
  topkGroup: 4,
  routedScalingFactor: 2.5,
  scoringFunc: 'sigmoid',
  normTopkProb: true,
};
const QWEN3: RoutingConfig = {
  numRoutedExperts: 128,
  topK: 8,
  numExpertGroups: 1,
  topkGroup: 1,
  routedScalingFactor: 1,
  scoringFunc: 'softmax',
  normTopkProb: true,
};

async function up(t: Tensor, stream: Stream): Promise<Tensor> {
  return t.to(DEV, { stream });
}

function poisoned(shape: number[], dtype: Tensor['dtype'], stream: Stream, byte = NAN_F32): Tensor {
  return Tensor.empty(shape, dtype, { device: DEV, stream }).fillBytes(byte, stream);
}

/** [rows, K] bf16 -> fp8 codes and row scales, as the fp8 dispatch makes them. */
function quantRows(x: Tensor, rows: number, K: number): { q: Tensor; s: Tensor } {
  const { q, scales } = quantizeBf16RowsFp8(x.data as Uint16Array, rows, K, false);
  return { q: Tensor.from(q, { dtype: 'fp8e4m3', shape: [rows, K] }), s: Tensor.from(scales, { shape: [rows, K / 128] }) };
}

/** Per 128x128 block: scale = amax / 448, codes = fp8(w / scale). */
function quantBlocks(w: Float32Array, E: number, N: number, K: number): { q: Tensor; s: Tensor } {
  const q = new Uint8Array(E * N * K);
  const nb = N / 128;
  const kb = K / 128;
  const s = new Float32Array(E * nb * kb);
  for (let e = 0; e < E; e++) {
    for (let bn = 0; bn < nb; bn++) {
      for (let bk = 0; bk < kb; bk++) {
        let amax = 1e-4;
        for (let n = bn * 128; n < bn * 128 + 128; n++) for (let k = bk * 128; k < bk * 128 + 128; k++) amax = Math.max(amax, Math.abs(w[(e * N + n) * K + k]!));
        const scale = Math.fround(amax / 448);
        s[(e * nb + bn) * kb + bk] = scale;
        for (let n = bn * 128; n < bn * 128 + 128; n++) for (let k = bk * 128; k < bk * 128 + 128; k++) q[(e * N + n) * K + k] = f32ToFp8E4m3Bits(w[(e * N + n) * K + k]! / scale);
      }
    }
  }
  return { q: Tensor.from(q, { dtype: 'fp8e4m3', shape: [E, N, K] }), s: Tensor.from(s, { shape: [E, nb, kb] }) };
}

/** [E, M, kb] row scales as [E, kb, M]. */
function blocksLayout(s: Float32Array, E: number, M: number, kb: number): Tensor {
  const out = new Float32Array(E * kb * M);
  for (let e = 0; e < E; e++) for (let m = 0; m < M; m++) for (let b = 0; b < kb; b++) out[(e * kb + b) * M + m] = s[(e * M + m) * kb + b]!;
  return Tensor.from(out, { shape: [E, kb, M] });
}

/**
 * bf16 [rows, H] whose 128-channel blocks span magnitudes: zeros (either sign),
 * values under the amax floor (bf16 subnormals included), moderate and huge
 * ones, and blocks mixing exponents from 2^-30 to 2^30.
 */
function spreadBf16(rng: SeededRandom, rows: number, H: number): Tensor {
  const t = Tensor.empty([rows, H], 'bf16');
  const d = t.data as Uint16Array;
  for (let b = 0; b < (rows * H) / 128; b++) {
    // 0 zeros, 1 under the floor, 2 subnormal, 3 moderate (2^-12 .. 2^12), 4 huge, 5 an exponent per value.
    const kind = rng.int(6);
    const scale = [0, 2 ** -40, 2 ** -130, 2 ** (rng.int(25) - 12), 2 ** 100, 1][kind]!;
    for (let i = b * 128; i < b * 128 + 128; i++) {
      if (kind === 0) d[i] = rng.int(2) ? 0x8000 : 0;
      else d[i] = f32ToBf16Bits(rng.normal() * scale * (kind === 5 ? 2 ** (rng.int(61) - 30) : 1));
    }
  }
  return t;
}

function gaussian(rng: SeededRandom, n: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * scale;
  return out;
}

describe.skipIf(gpus < 1)(`expert compute on one GPU (${skipReason(1)})`, () => {
  it('finds cuBLASLt 12.9+ with no environment variables set', () => {
    expect(process.env.WIDEEP_CUBLASLT_LIBRARY).toBeUndefined();
    const lt = loadCublasLt();
    expect(lt.path).toMatch(/libcublasLt\.so/);
    expect(lt.version).toBeGreaterThanOrEqual(120900);
    console.log(JSON.stringify({ cublasLt: lt }));
  });

  it('linear: bf16 and f32 outputs, and out = x·wᵀ + add', async () => {
    const stream = new Stream(0);
    const rng = new SeededRandom(101);
    const [M, K, N] = [67, 256, 192];
    const xh = randomBf16(rng, [M, K]);
    const wh = randomBf16(rng, [N, K], 0.1);
    const [x, w] = [await up(xh, stream), await up(wh, stream)];
    const ref = refLinear(xh.toFloat32(), wh.toFloat32(), M, N, K);
    const out = poisoned([M, N], 'bf16', stream);
    linear(x, w, { out, stream });
    assertClose((await out.cpu({ stream })).toFloat32(), ref.y, ref.mag, 'linear bf16', BF16_TOL);
    const out32 = poisoned([M, N], 'f32', stream);
    linear(x, w, { out: out32, stream });
    assertClose((await out32.cpu({ stream })).toFloat32(), ref.y, ref.mag, 'linear f32', { rel: 1e-5, abs: 1e-6 });
    fillValue(out32, 0.5, stream);
    linear(x, w, { out: out32, add: out32, stream });
    assertClose((await out32.cpu({ stream })).toFloat32(), ref.y.map((v) => v + 0.5), ref.mag, 'linear + add', { rel: 1e-5, abs: 1e-6 });
  });

  for (const strategy of ['batched', 'loop'] as const) {
    it(`groupedLinear bf16 (${strategy}): empty, one-row and partial experts, M off every tile size`, async () => {
      const stream = new Stream(0);
      const rng = new SeededRandom(202);
      const [E, M, K, N] = [5, 41, 256, 136];
      const xh = randomBf16(rng, [E, M, K]);
      const wh = randomBf16(rng, [E, N, K], 0.1);
      const out = poisoned([E, M, N], 'bf16', stream);
      groupedLinear({ x: await up(xh, stream), weight: await up(wh, stream), out, stream, strategy });
      const got = (await out.cpu({ stream })).toFloat32();
      const [xf, wf] = [xh.toFloat32(), wh.toFloat32()];
      for (let e = 0; e < E; e++) {
        const ref = refLinear(xf.subarray(e * M * K, (e + 1) * M * K), wf.subarray(e * N * K, (e + 1) * N * K), M, N, K);
        assertClose(got.subarray(e * M * N, (e + 1) * M * N), ref.y, ref.mag, `expert ${e}`, BF16_TOL);
      }
    });

    for (const layout of ['rows', 'blocks'] as const) {
      it(`groupedLinear fp8 block-scaled (${strategy}, ${layout} activation scales)`, async () => {
        const stream = new Stream(0);
        const rng = new SeededRandom(303);
        const [E, M, K, N] = [3, 36, 512, 256];
        const xh = randomBf16(rng, [E * M, K]);
        const { q: xq, s: xs } = quantRows(xh, E * M, K);
        const wf = gaussian(rng, E * N * K, 0.05);
        const { q: wq, s: ws } = quantBlocks(wf, E, N, K);
        const xScales = layout === 'rows' ? xs.reshape([E, M, K / 128]) : blocksLayout(xs.data as Float32Array, E, M, K / 128);
        const out = poisoned([E, M, N], 'bf16', stream);
        const args = {
          x: await up(xq.reshape([E, M, K]), stream),
          xScales: await up(xScales, stream),
          xScalesLayout: layout,
          weight: await up(wq, stream),
          weightScales: await up(ws, stream),
          out,
          stream,
          strategy,
        };
        if (strategy === 'batched') {
          // cuBLASLt 13.0 on H100 has no strided-batched algorithm with block
          // scales; where one has none, the refusal must be typed and name the matmul.
          try {
            groupedLinear(args);
          } catch (e) {
            expect(e).toMatchObject({ code: 'CUBLAS_STATUS_NOT_SUPPORTED', message: expect.stringContaining(`batch=${E}`) });
            return;
          }
        } else {
          groupedLinear(args);
        }
        const got = (await out.cpu({ stream })).toFloat32();
        const xd = dequantizeFp8(xq.data as Uint8Array, xs.data as Float32Array, E * M, K);
        for (let e = 0; e < E; e++) {
          const wd = dequantizeWeightFp8({ q: (wq.data as Uint8Array).subarray(e * N * K), scales: (ws.data as Float32Array).subarray(e * (N / 128) * (K / 128)) }, N, K);
          const ref = refLinear(xd.subarray(e * M * K, (e + 1) * M * K), wd, M, N, K);
          assertClose(got.subarray(e * M * N, (e + 1) * M * N), ref.y, ref.mag, `fp8 expert ${e}`, { rel: 2 ** -7, abs: 1e-5 });
        }
      });
    }
  }

  // K = 384: whole 128-wide blocks, not the 512s cuBLASLt needs, and fewer than the kernel's 4 pipeline
  // stages; K = 1024: the stages wrap around. 150 rows: three 64-row passes.
  for (const K of [384, 1024]) {
    it(`groupedLinear fp8 masked, K = ${K}: only each expert's counted rows, both scale layouts, multi-pass experts, block magnitudes; a graph reads the counts at replay`, async () => {
      const stream = new Stream(0);
      const rng = new SeededRandom(313 + K);
      const [E, M, N] = [5, 150, 256];
      const [kb, nb] = [K / 128, N / 128];
      // Each 128-channel block of x and each 128x128 block of w scaled by its own 2^k (exact in bf16):
      // a scale read from the wrong row, block or expert shows as a factor of 2 or more.
      const xf = new Float32Array(E * M * K);
      for (let i = 0; i < xf.length; i += 128) {
        const f = 2 ** (rng.int(7) - 3);
        for (let j = i; j < i + 128; j++) xf[j] = rng.normal() * f;
      }
      const xh = Tensor.from(Uint16Array.from(xf, f32ToBf16Bits), { dtype: 'bf16', shape: [E * M, K] });
      const { q: xq, s: xs } = quantRows(xh, E * M, K);
      const wf = gaussian(rng, E * N * K, 0.05);
      for (let e = 0; e < E; e++) {
        for (let b = 0; b < nb * kb; b++) {
          const f = 2 ** (rng.int(7) - 3);
          const [bn, bk] = [Math.floor(b / kb), b % kb];
          for (let n = bn * 128; n < bn * 128 + 128; n++) for (let k = bk * 128; k < bk * 128 + 128; k++) wf[(e * N + n) * K + k]! *= f;
        }
      }
      const { q: wq, s: ws } = quantBlocks(wf, E, N, K);
      const xd = dequantizeFp8(xq.data as Uint8Array, xs.data as Float32Array, E * M, K);
      const refs = Array.from({ length: E }, (_, e) => {
        const wd = dequantizeWeightFp8({ q: (wq.data as Uint8Array).subarray(e * N * K), scales: (ws.data as Float32Array).subarray(e * nb * kb) }, N, K);
        return refLinear(xd.subarray(e * M * K, (e + 1) * M * K), wd, M, N, K);
      });
      const x = await up(xq.reshape([E, M, K]), stream);
      const weight = await up(wq, stream);
      const weightScales = await up(ws, stream);
      const countsDev = Tensor.empty([E], 'i32', { device: DEV, stream });
      const check = async (out: Tensor, counts: number[], what: string) => {
        const got = (await out.cpu({ stream })).toFloat32();
        const bits = (await out.cpu({ stream })).data as Uint16Array;
        for (let e = 0; e < E; e++) {
          const rows = Math.min(Math.max(counts[e]!, 0), M);
          const base = e * M * N;
          assertClose(got.subarray(base, base + rows * N), refs[e]!.y.subarray(0, rows * N), refs[e]!.mag.subarray(0, rows * N), `${what}: expert ${e}`, { rel: 2 ** -7, abs: 1e-5 });
          const past = bits.subarray(base + rows * N, base + M * N);
          expect(past.every((b) => b === 0xffff), `${what}: expert ${e}: rows past its count ${rows} were written`).toBe(true);
        }
      };
      // An empty expert, one row, a partial 16-row tile, just over one pass, all rows; then a negative and an oversized count (clamped).
      const cases = [[0, 1, 37, 65, M], [M + 9, -3, 16, 64, 150]];
      for (const layout of ['rows', 'blocks'] as const) {
        const xScales = await up(layout === 'rows' ? xs.reshape([E, M, kb]) : blocksLayout(xs.data as Float32Array, E, M, kb), stream);
        for (const counts of cases) {
          await countsDev.copyFrom(Tensor.from(Int32Array.from(counts), { shape: [E] }), { stream });
          const out = poisoned([E, M, N], 'bf16', stream);
          groupedLinear({ x, xScales, xScalesLayout: layout, weight, weightScales, counts: countsDev, out, stream, strategy: 'masked' });
          await check(out, counts, `${layout} counts [${counts.join(', ')}]`);
        }
      }

      // Captured once with some counts; replays compute the counts the device holds at launch.
      const xScales = await up(xs.reshape([E, M, kb]), stream);
      const out = poisoned([E, M, N], 'bf16', stream);
      await countsDev.copyFrom(Tensor.from(Int32Array.from([1, 1, 1, 1, 1]), { shape: [E] }), { stream });
      const graph = await Graph.capture(stream, () => void groupedLinear({ x, xScales, weight, weightScales, counts: countsDev, out, stream, strategy: 'masked' }));
      expect(graph.describe()).toEqual({ nodes: 1, byType: { kernel: 1 }, roots: 1, maxDependencies: 0, maxDependents: 0 });
      for (const counts of [[3, 0, 150, 17, 64], [0, 0, 0, 0, 0], [129, 5, 1, 0, 80]]) {
        await countsDev.copyFrom(Tensor.from(Int32Array.from(counts), { shape: [E] }), { stream });
        out.fillBytes(0xff, stream);
        graph.launch(stream);
        await check(out, counts, `graph replay, counts [${counts.join(', ')}]`);
      }
      graph.close();
    });
  }

  it('swiglu: bf16, and fp8 with row and block scales; rows past a count stay unwritten', async () => {
    const stream = new Stream(0);
    const rng = new SeededRandom(404);
    const [E, M, I] = [3, 20, 256];
    const counts = [20, 0, 7];
    const xh = randomBf16(rng, [E, M, 2 * I], 2);
    const x = await up(xh, stream);
    const countsDev = await up(Tensor.from(new Int32Array(counts)), stream);
    const xf = xh.toFloat32();
    const ref = new Float64Array(E * M * I);
    for (let r = 0; r < E * M; r++) for (let i = 0; i < I; i++) ref[r * I + i] = refSwiglu(xf[r * 2 * I + i]!, xf[r * 2 * I + I + i]!);
    const valid = (r: number) => r % M < counts[Math.floor(r / M)]!;

    const out = poisoned([E, M, I], 'bf16', stream);
    swiglu({ x, counts: countsDev, out, stream });
    const got = (await out.cpu({ stream })).toFloat32();
    for (let r = 0; r < E * M; r++) {
      const row = got.subarray(r * I, (r + 1) * I);
      if (!valid(r)) expect(row.every(Number.isNaN), `row ${r} past its count was written`).toBe(true);
      else assertClose(row, ref.subarray(r * I, (r + 1) * I), ref.subarray(r * I, (r + 1) * I).map(Math.abs), `swiglu row ${r}`, BF16_TOL);
    }

    for (const layout of ['rows', 'blocks'] as const) {
      const q = poisoned([E, M, I], 'fp8e4m3', stream, 0x7f);
      const sShape = layout === 'rows' ? [E, M, I / 128] : [E, I / 128, M];
      const s = poisoned(sShape, 'f32', stream);
      swiglu({ x, counts: countsDev, fp8: true, scalesLayout: layout, out: q, scales: s, stream });
      const qh = (await q.cpu({ stream })).data as Uint8Array;
      const sh = (await s.cpu({ stream })).data as Float32Array;
      for (let r = 0; r < E * M; r++) {
        if (!valid(r)) continue;
        const [e, m] = [Math.floor(r / M), r % M];
        for (let b = 0; b < I / 128; b++) {
          const scale = layout === 'rows' ? sh[r * (I / 128) + b]! : sh[(e * (I / 128) + b) * M + m]!;
          let amax = 0;
          for (let i = b * 128; i < b * 128 + 128; i++) amax = Math.max(amax, Math.abs(ref[r * I + i]!));
          expect(Math.abs(scale - amax / 448)).toBeLessThanOrEqual((amax / 448) * 2 ** -7 + 1e-12);
          for (let i = b * 128; i < b * 128 + 128; i++) {
            const v = fp8E4m3BitsToF32(qh[r * I + i]!) * scale;
            expect(Math.abs(v - ref[r * I + i]!), `fp8 ${layout} row ${r} channel ${i}`).toBeLessThanOrEqual(Math.abs(ref[r * I + i]!) * 2 ** -3 + scale * 2 ** -6);
          }
        }
      }
    }
  });

  it('quantizeRowsFp8: fp8 rows and 1x128 scales equal the host cast bit for bit, eagerly and in a captured graph', async () => {
    const stream = new Stream(0);
    const rng = new SeededRandom(454);
    // 70 000 rows: more than a grid's y dimension holds.
    const cases: [number, number][] = [[0, 128], [1, 128], [37, 128], [0, 384], [1, 384], [37, 384], [1, 7168], [19, 7168], [70_000, 128]];
    for (const [T, H] of cases) {
      for (const roundScale of [false, true]) {
        const what = `T=${T} H=${H} roundScale=${roundScale}`;
        const xh = spreadBf16(rng, T, H);
        const ref = quantizeBf16RowsFp8(xh.data as Uint16Array, T, H, roundScale);
        const x = await up(xh, stream);
        const out = poisoned([T, H], 'fp8e4m3', stream);
        const scales = poisoned([T, H / 128], 'f32', stream);
        const r = quantizeRowsFp8({ x, roundScale, out, scales, stream });
        expect(r.out).toBe(out);
        expect(r.scales).toBe(scales);
        assertBitwiseEqual((await out.cpu({ stream })).data, ref.q, `${what}: out`);
        assertBitwiseEqual((await scales.cpu({ stream })).data, ref.scales, `${what}: scales`);
        if (T === 37 && H === 384) {
          // Outputs allocated by the call have the documented shapes and dtypes.
          const own = quantizeRowsFp8({ x, roundScale, stream });
          expect([own.out.dtype, own.out.shape, own.scales.dtype, own.scales.shape]).toEqual(['fp8e4m3', [T, H], 'f32', [T, H / 128]]);
          assertBitwiseEqual((await own.out.cpu({ stream })).data, ref.q, `${what}: allocated out`);
          assertBitwiseEqual((await own.scales.cpu({ stream })).data, ref.scales, `${what}: allocated scales`);
        }
      }
    }

    // Captured once, replayed onto poisoned outputs: the graph quantises the rows x holds at launch.
    const [T, H] = [29, 1024];
    const x = Tensor.empty([T, H], 'bf16', { device: DEV, stream });
    const out = poisoned([T, H], 'fp8e4m3', stream);
    const scales = poisoned([T, H / 128], 'f32', stream);
    const graph = await Graph.capture(stream, () => void quantizeRowsFp8({ x, roundScale: true, out, scales, stream }));
    // One kernel, nothing else: describe() reads the captured graph back.
    expect(graph.describe()).toEqual({ nodes: 1, byType: { kernel: 1 }, roots: 1, maxDependencies: 0, maxDependents: 0 });
    for (let i = 0; i < 2; i++) {
      const xh = spreadBf16(rng, T, H);
      await x.copyFrom(xh, { stream });
      out.fillBytes(0xff, stream);
      scales.fillBytes(0xff, stream);
      graph.launch(stream);
      const ref = quantizeBf16RowsFp8(xh.data as Uint16Array, T, H, true);
      assertBitwiseEqual((await out.cpu({ stream })).data, ref.q, `graph replay ${i}: out`);
      assertBitwiseEqual((await scales.cpu({ stream })).data, ref.scales, `graph replay ${i}: scales`);
    }
    graph.close();
  });

  for (const [name, config, withBias] of [
    ['DeepSeek-V3 (sigmoid, bias, 8 groups keep 4, x2.5)', DEEPSEEK_V3, true],
    ['DeepSeek-V3 without bias', DEEPSEEK_V3, false],
    ['Qwen3 (softmax, no groups)', QWEN3, false],
  ] as const) {
    it(`routerTopk matches the cpu gate id for id: ${name}, with ties`, async () => {
      const stream = new Stream(0);
      const rng = new SeededRandom(505);
      const T = 300;
      const E = config.numRoutedExperts;
      const per = E / config.numExpertGroups;
      const logits = gaussian(rng, T * E, 1);
      logits.fill(0.25, 0, E); // token 0: every expert ties
      logits.copyWithin(E + 3 * per, E, E + per); // token 1: groups 0 and 3 tie
      for (let e = 1; e < E; e += 2) logits[2 * E + e] = logits[2 * E + e - 1]!; // token 2: neighbours tie
      const bias = withBias ? gaussian(rng, E, 0.1) : new Float32Array(E);
      const idx = poisoned([T, config.topK], 'i32', stream, 0x7f);
      const wts = poisoned([T, config.topK], 'f32', stream);
      routerTopk({
        logits: await up(Tensor.from(logits, { shape: [T, E] }), stream),
        bias: withBias ? await up(Tensor.from(bias), stream) : undefined,
        config,
        topkIdx: idx,
        topkWeights: wts,
        stream,
      });
      const want = { topkIdx: new Int32Array(T * config.topK), topkWeights: new Float32Array(T * config.topK) };
      const layer = { ...config, hidden: 8, moeIntermediate: 8, numSharedExperts: 0, attentionHeadDim: 8, routerBiasStd: 0 };
      for (let t = 0; t < T; t++) groupedTopk(layer, bias, logits, t * E, t, want);
      assertBitwiseEqual((await idx.cpu({ stream })).data, want.topkIdx, 'topkIdx');
      assertClose((await wts.cpu({ stream })).toFloat32(), want.topkWeights, want.topkWeights.map(Math.abs), 'topkWeights', { rel: 1e-6, abs: 0 });
    });
  }

  it('routerTopk maps to replicas (static table, dynamic hash) and counts the load', async () => {
    const stream = new Stream(0);
    const rng = new SeededRandom(606);
    const config = DEEPSEEK_V3;
    const [T, E, R] = [200, 256, 3];
    const logits = await up(Tensor.from(gaussian(rng, T * E, 1), { shape: [T, E] }), stream);
    const plain = routerTopk({ logits, config, stream });
    const logical = (await plain.topkIdx.cpu({ stream })).data as Int32Array;

    const table = Int32Array.from({ length: E }, (_, e) => (e * 37 + 5) % 320);
    const counts = await up(Tensor.zeros([320], 'i32'), stream);
    const stat = routerTopk({ logits, config, replicas: { kind: 'static', table: await up(Tensor.from(table), stream) }, counts, stream });
    const statIds = (await stat.topkIdx.cpu({ stream })).data as Int32Array;
    expect(Array.from(statIds)).toEqual(Array.from(logical, (e) => table[e]!));
    const hist = new Int32Array(320);
    for (const p of statIds) hist[p]!++;
    assertBitwiseEqual((await counts.cpu({ stream })).data, hist, 'counts');

    const logcnt = Int32Array.from({ length: E }, () => 1 + rng.int(R));
    const log2phy = Int32Array.from({ length: E * R }, (_, i) => (i % R < logcnt[Math.floor(i / R)]! ? 1000 + i : -1));
    const seed = 12345;
    const dyn = routerTopk({
      logits,
      config,
      replicas: { kind: 'dynamic', log2phy: await up(Tensor.from(log2phy, { shape: [E, R] }), stream), logcnt: await up(Tensor.from(logcnt), stream), seed },
      stream,
    });
    const dynIds = (await dyn.topkIdx.cpu({ stream })).data as Int32Array;
    const expected = Array.from(logical, (e, i) => log2phy[e * R + Math.min(logcnt[e]! - 1, Math.floor(counterUniform(seed, i) * logcnt[e]!))]!);
    expect(Array.from(dynIds)).toEqual(expected);
  });

  it('route: the gate GEMM gives the cpu logits within rounding, and the ids of the cpu gate on those logits', async () => {
    const stream = new Stream(0);
    const rng = new SeededRandom(707);
    const [T, H, E] = [64, 512, 256];
    const xh = randomBf16(rng, [T, H]);
    const gh = randomBf16(rng, [E, H], 0.05);
    const r = route({ x: await up(xh, stream), gateWeight: await up(gh, stream), config: DEEPSEEK_V3, stream });
    const logits = (await r.logits.cpu({ stream })).data as Float32Array;
    const ref = refLinear(xh.toFloat32(), gh.toFloat32(), T, E, H);
    assertClose(logits, ref.y, ref.mag, 'logits', { rel: 1e-5, abs: 1e-6 });
    const want = { topkIdx: new Int32Array(T * 8), topkWeights: new Float32Array(T * 8) };
    const layer = { ...DEEPSEEK_V3, hidden: 8, moeIntermediate: 8, numSharedExperts: 0, attentionHeadDim: 8, routerBiasStd: 0 };
    for (let t = 0; t < T; t++) groupedTopk(layer, new Float32Array(E), logits, t * E, t, want);
    assertBitwiseEqual((await r.topkIdx.cpu({ stream })).data, want.topkIdx, 'topkIdx');
  });

  it('permuteToExperts / unpermuteFromExperts: rows land in their slots, weighted sums come back, overflow is flagged', async () => {
    const stream = new Stream(0);
    const rng = new SeededRandom(808);
    const [N, k, L, H] = [50, 4, 6, 256];
    const idx = new Int32Array(N * k).fill(-1);
    for (let r = 0; r < N; r++) {
      const picks = [...Array(L).keys()].sort(() => rng.uniform() - 0.5).slice(0, 1 + rng.int(k));
      picks.forEach((e, j) => (idx[r * k + j] = e));
    }
    const xh = randomBf16(rng, [N, H]);
    const topkIdx = await up(Tensor.from(idx, { shape: [N, k] }), stream);
    const p = permuteToExperts({ x: await up(xh, stream), topkIdx, numExperts: L, cap: N, stream });
    const counts = (await p.counts.cpu({ stream })).data as Int32Array;
    const slots = (await p.slotOf.cpu({ stream })).data as Int32Array;
    const moved = (await p.x.cpu({ stream })).data as Uint16Array;
    const hist = new Int32Array(L);
    for (const e of idx) if (e >= 0) hist[e]!++;
    assertBitwiseEqual(counts, hist, 'counts');
    expect(((await p.overflow.cpu({ stream })).data as Int32Array)[0]).toBe(0);
    const xb = xh.data as Uint16Array;
    for (let i = 0; i < N * k; i++) {
      const e = idx[i]!;
      if (e < 0) {
        expect(slots[i]).toBe(-1);
        continue;
      }
      expect(slots[i]).toBeGreaterThanOrEqual(0);
      expect(slots[i]).toBeLessThan(hist[e]!);
      const r = Math.floor(i / k);
      assertBitwiseEqual(moved.subarray((e * N + slots[i]!) * H, (e * N + slots[i]! + 1) * H), xb.subarray(r * H, (r + 1) * H), `row ${r} in expert ${e}`);
    }

    const w = gaussian(rng, N * k, 1);
    const yh = randomBf16(rng, [L, N, H]);
    const out = poisoned([N, H], 'bf16', stream);
    unpermuteFromExperts({ y: await up(yh, stream), slotOf: p.slotOf, topkIdx, weights: await up(Tensor.from(w, { shape: [N, k] }), stream), out, stream });
    const yf = yh.toFloat32();
    const ref = new Float64Array(N * H);
    const mag = new Float64Array(N * H);
    for (let i = 0; i < N * k; i++) {
      if (idx[i]! < 0) continue;
      const r = Math.floor(i / k);
      const at = (idx[i]! * N + slots[i]!) * H;
      for (let c = 0; c < H; c++) {
        ref[r * H + c]! += w[i]! * yf[at + c]!;
        mag[r * H + c]! += Math.abs(w[i]! * yf[at + c]!);
      }
    }
    assertClose((await out.cpu({ stream })).toFloat32(), ref, mag, 'unpermute', BF16_TOL);

    const small = permuteToExperts({ x: await up(xh, stream), topkIdx, numExperts: L, cap: 2, stream });
    expect(((await small.overflow.cpu({ stream })).data as Int32Array)[0]).toBe(1);
    const smallSlots = (await small.slotOf.cpu({ stream })).data as Int32Array;
    expect(Array.from(smallSlots).filter((s) => s >= 0).length).toBe(Array.from(hist, (n) => Math.min(n, 2)).reduce((a, b) => a + b, 0));
  });

  it('permuteToExperts moves fp8 rows and their scales into the block layout', async () => {
    const stream = new Stream(0);
    const rng = new SeededRandom(909);
    const [N, k, L, H] = [20, 2, 3, 256];
    const idx = Int32Array.from({ length: N * k }, (_, i) => (i % k === 0 ? rng.int(L) : -1));
    const xh = randomBf16(rng, [N, H]);
    const { q, s } = quantRows(xh, N, H);
    const p = permuteToExperts({ x: await up(q, stream), xScales: await up(s, stream), topkIdx: await up(Tensor.from(idx, { shape: [N, k] }), stream), numExperts: L, cap: N, stream });
    const slots = (await p.slotOf.cpu({ stream })).data as Int32Array;
    const sc = (await p.scales!.cpu({ stream })).data as Float32Array;
    const sh = s.data as Float32Array;
    for (let i = 0; i < N * k; i++) {
      if (idx[i]! < 0) continue;
      const r = Math.floor(i / k);
      for (let b = 0; b < H / 128; b++) expect(sc[(idx[i]! * (H / 128) + b) * N + slots[i]!]).toBe(sh[r * (H / 128) + b]);
    }
  });

  it('fills: seeded uniform values equal the host ones bit for bit; normal values have mean 0 and std 1', async () => {
    const stream = new Stream(0);
    for (const dtype of ['f32', 'bf16'] as const) {
      const dist = { kind: 'uniform' as const, low: -2, high: 3 };
      const d = randomTensor([1000, 33], dtype, { device: DEV, seed: 77, distribution: dist, stream });
      const h = randomTensor([1000, 33], dtype, { seed: 77, distribution: dist });
      assertBitwiseEqual((await d.cpu({ stream })).data, h.data, `uniform ${dtype}`);
    }
    const n = (await randomTensor([200_000], 'f32', { device: DEV, seed: 5, stream }).cpu({ stream })).data as Float32Array;
    const mean = n.reduce((a, b) => a + b, 0) / n.length;
    const std = Math.sqrt(n.reduce((a, b) => a + (b - mean) ** 2, 0) / n.length);
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(std - 1)).toBeLessThan(0.01);
    const c = fillValue(poisoned([5, 7], 'bf16', stream), 1.5, stream);
    expect(Array.from((await c.cpu({ stream })).toFloat32())).toEqual(new Array(35).fill(1.5));
  });

  for (const fp8 of [false, true]) {
    it(`expertsForward (${fp8 ? 'fp8' : 'bf16'}) matches the host experts; a captured graph replays it bit for bit`, async () => {
      const stream = new Stream(0);
      const rng = new SeededRandom(fp8 ? 1111 : 1010);
      const [E, M, H, I] = fp8 ? [2, 8, 512, 512] : [4, 24, 256, 128];
      const counts = fp8 ? [8, 3] : [24, 5, 0, 17];
      const xh = randomBf16(rng, [E, M, H]);
      const w13f = gaussian(rng, E * 2 * I * H, 0.05);
      const w2f = gaussian(rng, E * H * I, 0.05);
      const countsDev = await up(Tensor.from(new Int32Array(counts)), stream);
      let xf: Float32Array;
      let w13: Float32Array;
      let w2: Float32Array;
      let run: (out: Tensor) => void;
      if (fp8) {
        const xq = quantRows(xh, E * M, H);
        const a = quantBlocks(w13f, E, 2 * I, H);
        const b = quantBlocks(w2f, E, H, I);
        xf = dequantizeFp8(xq.q.data as Uint8Array, xq.s.data as Float32Array, E * M, H);
        w13 = new Float32Array(E * 2 * I * H);
        w2 = new Float32Array(E * H * I);
        for (let e = 0; e < E; e++) {
          w13.set(dequantizeWeightFp8({ q: (a.q.data as Uint8Array).subarray(e * 2 * I * H), scales: (a.s.data as Float32Array).subarray(e * (2 * I / 128) * (H / 128)) }, 2 * I, H), e * 2 * I * H);
          w2.set(dequantizeWeightFp8({ q: (b.q.data as Uint8Array).subarray(e * H * I), scales: (b.s.data as Float32Array).subarray(e * (H / 128) * (I / 128)) }, H, I), e * H * I);
        }
        const dev = { x: await up(xq.q.reshape([E, M, H]), stream), xs: await up(xq.s.reshape([E, M, H / 128]), stream), w13: await up(a.q, stream), w13s: await up(a.s, stream), w2: await up(b.q, stream), w2s: await up(b.s, stream) };
        run = (out) => void expertsForward({ x: dev.x, xScales: dev.xs, counts: countsDev, weights: { w13: dev.w13, w13Scales: dev.w13s, w2: dev.w2, w2Scales: dev.w2s }, out, stream });
      } else {
        const toBf16 = (f: Float32Array, shape: number[]) => Tensor.from(Uint16Array.from(f, f32ToBf16Bits), { dtype: 'bf16', shape });
        const w13t = toBf16(w13f, [E, 2 * I, H]);
        const w2t = toBf16(w2f, [E, H, I]);
        [xf, w13, w2] = [xh.toFloat32(), w13t.toFloat32(), w2t.toFloat32()];
        const dev = { x: await up(xh, stream), w13: await up(w13t, stream), w2: await up(w2t, stream) };
        run = (out) => void expertsForward({ x: dev.x, counts: countsDev, weights: { w13: dev.w13, w2: dev.w2 }, out, stream });
      }
      const out = poisoned([E, M, H], 'bf16', stream);
      run(out);
      const got = (await out.cpu({ stream })).toFloat32();
      for (let e = 0; e < E; e++) {
        const h = refLinear(xf.subarray(e * M * H, (e + 1) * M * H), w13.subarray(e * 2 * I * H, (e + 1) * 2 * I * H), M, 2 * I, H).y;
        const act = new Float32Array(M * I);
        for (let m = 0; m < M; m++) for (let i = 0; i < I; i++) act[m * I + i] = refSwiglu(h[m * 2 * I + i]!, h[m * 2 * I + I + i]!);
        const y = refLinear(act, w2.subarray(e * H * I, (e + 1) * H * I), M, H, I);
        const rows = counts[e]!;
        // bf16 (or fp8) intermediates round h and the activation once each: a few bf16 ulps of the sum of |terms|.
        assertClose(got.subarray(e * M * H, e * M * H + rows * H), y.y.subarray(0, rows * H), y.mag.subarray(0, rows * H), `expert ${e}`, { rel: fp8 ? 2 ** -3 : 2 ** -5, abs: 1e-4 });
      }

      const replay = poisoned([E, M, H], 'bf16', stream);
      const graph = await Graph.capture(stream, () => run(replay));
      for (let i = 0; i < 3; i++) graph.launch(stream);
      const again = await replay.cpu({ stream });
      graph.close();
      const eager = await out.cpu({ stream });
      for (let e = 0; e < E; e++) {
        const n = counts[e]! * H;
        assertBitwiseEqual((again.data as Uint16Array).subarray(e * M * H, e * M * H + n), (eager.data as Uint16Array).subarray(e * M * H, e * M * H + n), `graph replay, expert ${e}`);
      }
    });
  }
});
