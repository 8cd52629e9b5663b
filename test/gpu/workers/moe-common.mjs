// What the GPU MoE layer workers share: a small DeepSeek-style layer
// (grouped sigmoid routing with bias, SwiGLU experts, a shared expert), its
// weights (the same on every rank, from a seed rank 0 picks), the layer
// computed on the host in double from the same bf16 weights, and the report
// each worker prints as one JSON line.
import { generateMoeLayerWeights, moeLayerConfig } from '../../../dist/simulation/index.js';
import { roundRowsToBf16 } from '../../../dist/simulation/math.js';

export const config = moeLayerConfig({ hidden: 256, moeIntermediate: 128, numRoutedExperts: 16, numSharedExperts: 1, topK: 4, numExpertGroups: 4, topkGroup: 2 });
export const { hidden: H, topK: k, numRoutedExperts: E } = config;
export const report = { rank: -1, checks: 0, failures: [], nearTies: 0, tokens: 0, replays: 0, moves: 0 };
export const fail = (msg) => report.failures.length < 20 && report.failures.push(msg);

/** The host layer, in double over bf16 values, for one token; undefined when its top-k is within 1e-3 of a tie. */
function reference(w, x, at, withShared) {
  const I = config.moeIntermediate;
  const scores = new Float64Array(E);
  const choice = new Float64Array(E);
  for (let e = 0; e < E; e++) {
    let s = 0;
    for (let h = 0; h < H; h++) s += w.gate[e * H + h] * x[at + h];
    scores[e] = 1 / (1 + Math.exp(-s));
    choice[e] = scores[e] + w.gateBias[e];
  }
  const per = E / config.numExpertGroups;
  const groups = [...Array(config.numExpertGroups).keys()].map((g) => {
    const v = [...choice.subarray(g * per, (g + 1) * per)].sort((a, b) => b - a);
    return { g, s: v[0] + v[1] };
  });
  groups.sort((a, b) => b.s - a.s);
  if (groups[config.topkGroup - 1].s - groups[config.topkGroup].s < 1e-3) return undefined;
  const kept = new Set(groups.slice(0, config.topkGroup).map((x) => x.g));
  const cand = [...Array(E).keys()].filter((e) => kept.has(Math.floor(e / per))).sort((a, b) => choice[b] - choice[a]);
  if (choice[cand[k - 1]] - choice[cand[k]] < 1e-3) return undefined;
  const chosen = cand.slice(0, k);
  const sum = chosen.reduce((s, e) => s + scores[e], 0);
  const out = new Float64Array(H);
  const mag = new Float64Array(H);
  const expert = (ew, weight) => {
    const Ie = ew.intermediate;
    const act = new Float64Array(Ie);
    for (let i = 0; i < Ie; i++) {
      let g = 0;
      let u = 0;
      for (let h = 0; h < H; h++) {
        g += ew.gate[i * H + h] * x[at + h];
        u += ew.up[i * H + h] * x[at + h];
      }
      act[i] = (g / (1 + Math.exp(-g))) * u;
    }
    // The tolerance scales with the sum of magnitudes of the down projection's
    // terms: the GPU rounds h and the activation to bf16, so a channel whose
    // terms cancel keeps their rounding error.
    for (let h = 0; h < H; h++) {
      let y = 0;
      let terms = 0;
      for (let i = 0; i < Ie; i++) {
        y += ew.down[h * Ie + i] * act[i];
        terms += Math.abs(ew.down[h * Ie + i] * act[i]);
      }
      out[h] += weight * y;
      mag[h] += Math.abs(weight) * terms;
    }
  };
  for (const e of chosen) expert(w.experts[e], (scores[e] / (sum + 1e-20)) * config.routedScalingFactor);
  if (withShared) expert(w.shared, 1);
  return { out, mag, chosen };
}

/** Agrees on a seed through the store and builds the layer's weights, rounded to bf16. */
export async function sharedWeights(pg, key) {
  report.rank = pg.rank;
  if (pg.rank === 0) await pg.store.set(key, String(Date.now() % 1_000_000_007));
  const seed = Number(new TextDecoder().decode(await pg.store.get(key)));
  // bf16 weights on both sides: the host reference reads the same values the GPU does.
  const raw = generateMoeLayerWeights(config, seed);
  const round = (ew) => ({ ...ew, gate: roundRowsToBf16(ew.gate), up: roundRowsToBf16(ew.up), down: roundRowsToBf16(ew.down) });
  return { seed, weights: { ...raw, gate: roundRowsToBf16(raw.gate), experts: raw.experts.map(round), shared: round(raw.shared) } };
}

export function randomTokens(rng, T) {
  const xf = roundRowsToBf16(Float32Array.from({ length: T * H }, () => rng.normal()));
  return { xf, bits: new Uint16Array(new Uint32Array(xf.buffer).map((u) => u >>> 16)) };
}

/**
 * Compares a [T, H] output with the host layer (routed experts, plus the
 * shared expert unless `withShared` is false); returns the logical experts
 * chosen per checked token.
 */
export function check(weights, label, xf, T, got, withShared = true) {
  const chosen = [];
  for (let t = 0; t < T; t++) {
    report.tokens++;
    const ref = reference(weights, xf, t * H, withShared);
    if (!ref) {
      report.nearTies++;
      continue;
    }
    chosen.push(ref.chosen);
    for (let h = 0; h < H; h++) {
      report.checks++;
      const tol = 2 ** -5 * ref.mag[h] + 1e-3;
      if (!(Math.abs(got[t * H + h] - ref.out[h]) <= tol)) fail(`${label} token ${t} channel ${h}: got ${got[t * H + h]}, expected ${ref.out[h]} ± ${tol}`);
    }
  }
  return chosen;
}
