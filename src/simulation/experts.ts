/**
 * SwiGLU experts: `down(silu(gate(x)) * up(x))` in float32 on rows that are
 * already bf16 values (the dispatched activations).
 */
import { matVec, silu } from './math.js';
import type { ExpertWeights } from './weights.js';

/** Scratch of one expert call, reusable across calls of the same width. */
export class ExpertScratch {
  readonly g: Float32Array;
  readonly u: Float32Array;
  constructor(intermediate: number) {
    this.g = new Float32Array(intermediate);
    this.u = new Float32Array(intermediate);
  }
}

/** out[outAt .. outAt + H) = expert(x[xAt .. xAt + H)). */
export function expertForward(w: ExpertWeights, x: Float32Array, xAt: number, out: Float32Array, outAt: number, scratch?: ExpertScratch): void {
  const { hidden: H, intermediate: I } = w;
  const s = scratch && scratch.g.length === I ? scratch : new ExpertScratch(I);
  matVec(w.gate, I, H, x, xAt, s.g, 0);
  matVec(w.up, I, H, x, xAt, s.u, 0);
  for (let i = 0; i < I; i++) s.g[i] = silu(s.g[i]!) * s.u[i]!;
  matVec(w.down, H, I, s.g, 0, out, outAt);
}

/** The expert over every `H`-wide row of `x`; zeros when `w` is null (no shared expert). */
export function expertRows(w: ExpertWeights | null, x: Float32Array, H: number): Float32Array {
  const out = new Float32Array(x.length);
  if (!w) return out;
  const scratch = new ExpertScratch(w.intermediate);
  for (let at = 0; at < x.length; at += H) expertForward(w, x, at, out, at, scratch);
  return out;
}
