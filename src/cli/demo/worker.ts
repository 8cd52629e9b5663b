/**
 * One rank of `wideep demo` on the cuda backend (started by the launcher):
 * the plan (DP attention + DeepEP over every rank) sizes the EP buffer
 * through WideEp; the layer gets the same seeded weights on every rank; then
 * prefill steps (normal dispatch, eager) and decode steps (low-latency, one
 * captured CUDA graph replayed on fresh tokens), each output poisoned
 * before it runs and compared with the layer computed on the host. Prints
 * one JSON report line; exits 0 even on a mismatch (the command decides).
 */
import { Stream } from '../../cuda/stream.js';
import { SeededRandom } from '../../ep/random-routing.js';
import { WideepError } from '../../errors.js';
import { MoeLayer } from '../../moe/layer.js';
import { WideEp } from '../../moe/wide-ep.js';
import { ParallelConfig } from '../../planning/config.js';
import { initProcessGroup } from '../../runtime/process-group.js';
import { generateMoeLayerWeights } from '../../simulation/weights.js';
import { bf16BitsToF32, f32ToBf16Bits } from '../../tensor/convert.js';
import { Tensor } from '../../tensor/tensor.js';
import { compareClose, describeClose } from '../../testing/compare.js';
import { moeLayerReference } from '../../testing/moe-reference.js';
import { poison } from '../../testing/poison.js';
import {
  DECODE_REPLAYS,
  DECODE_TOKENS,
  DEMO_SETTINGS_VAR,
  GPU_DEMO_CONFIG,
  MAX_PREFILL_TOKENS,
  PREFILL_STEPS,
  demoModel,
  type DemoRankReport,
  type DemoWorkerSettings,
} from './gpu-layer.js';

const settings = JSON.parse(process.env[DEMO_SETTINGS_VAR] ?? '{"seed":1}') as DemoWorkerSettings;
const config = GPU_DEMO_CONFIG;
const H = config.hidden;
const pg = await initProcessGroup();
const R = pg.worldSize;
// The launcher gives a rank without a GPU of its own none; the command checks the count first.
if (pg.device === undefined) throw new WideepError('ERR_NO_GPU', `demo worker: rank ${pg.rank} has no GPU (local rank ${pg.localRank})`);
const gpu = pg.device;
const report: DemoRankReport = { rank: pg.rank, device: gpu, checks: 0, failures: [], tokens: 0, nearTies: 0, worstRatio: 0, steps: [] };
const rng = new SeededRandom(settings.seed * 1009 + pg.rank);
const weights = generateMoeLayerWeights(config, settings.seed);
const stream = new Stream(gpu);
const device = `cuda:${gpu}` as const;

function randomTokens(T: number): { host: Tensor; values: Float32Array } {
  const bits = Uint16Array.from({ length: T * H }, () => f32ToBf16Bits(rng.normal()));
  return { host: Tensor.from(bits, { dtype: 'bf16', shape: [T, H] }), values: Float32Array.from(bits, bf16BitsToF32) };
}

async function check(label: string, values: Float32Array, T: number, out: Tensor): Promise<void> {
  const ref = moeLayerReference(weights, values, T);
  const got = (await out.cpu({ stream })).toFloat32();
  const r = compareClose(got, ref.out, { atol: 1e-3, rtol: 2 ** -5, scale: ref.scale, include: (i) => ref.nearTie[Math.floor(i / H)] === 0 });
  report.tokens += T;
  report.nearTies += ref.nearTie.reduce((a, b) => a + b, 0);
  report.checks += r.checked;
  const w = r.worst;
  if (w) report.worstRatio = Math.max(report.worstRatio, Number.isNaN(w.got) ? Infinity : Math.abs(w.got - w.expected) / w.tolerance);
  if (!r.pass) report.failures.push(describeClose(`rank ${pg.rank} ${label}`, r, H));
}

const plan = ParallelConfig.fromOptions({ tp: R, dpSize: R, enableDpAttention: R > 1, moeA2aBackend: 'deepep' });
const wideEp = await WideEp.create(pg, plan, { model: demoModel(config), maxTokensPerRank: MAX_PREFILL_TOKENS });
try {
  const layer = await MoeLayer.fromHost(wideEp.ep, weights, gpu, { stream });
  for (let step = 0; step < PREFILL_STEPS; step++) {
    const T = step === 1 && R > 1 && pg.rank === R - 1 ? 0 : 1 + rng.int(MAX_PREFILL_TOKENS);
    const tokens = randomTokens(T);
    const x = await tokens.host.to(device, { stream });
    const out = poison(Tensor.empty([T, H], 'bf16', { device, stream }), stream);
    await stream.synchronize();
    const t0 = performance.now();
    await layer.forward(x, { mode: 'normal', stream, out });
    const hostUs = (performance.now() - t0) * 1e3;
    await stream.synchronize();
    report.steps.push({ kind: 'prefill', tokens: T, ms: performance.now() - t0, hostUs });
    await check(`prefill step ${step}`, tokens.values, T, out);
    x.close(stream);
    out.close(stream);
  }

  const x = Tensor.empty([DECODE_TOKENS, H], 'bf16', { device, stream });
  const out = Tensor.empty([DECODE_TOKENS, H], 'bf16', { device, stream });
  await x.copyFrom(randomTokens(DECODE_TOKENS).host, { stream });
  const graph = await layer.captureDecode(x, out, { stream });
  for (let r = 0; r < DECODE_REPLAYS; r++) {
    const tokens = randomTokens(DECODE_TOKENS);
    await x.copyFrom(tokens.host, { stream });
    poison(out, stream);
    await stream.synchronize();
    const t0 = performance.now();
    graph.launch(stream);
    const hostUs = (performance.now() - t0) * 1e3;
    await stream.synchronize();
    report.steps.push({ kind: 'decode', tokens: DECODE_TOKENS, ms: performance.now() - t0, hostUs });
    await check(`decode replay ${r}`, tokens.values, DECODE_TOKENS, out);
  }
  graph.close();
  x.close(stream);
  out.close(stream);
} catch (e) {
  const err = e as { code?: string; message?: string };
  report.failures.push(`rank ${pg.rank}: ${err.code ? `${err.code}: ` : ''}${err.message ?? String(e)}`);
} finally {
  await wideEp.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
