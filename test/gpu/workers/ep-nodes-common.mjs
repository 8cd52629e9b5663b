// Shared pieces of the across-nodes GPU workers: the cpu reference's node
// lists and the network records built on the host, as the cpu hierarchical
// path (src/ep/cpu/node-dispatch.ts) would send them.
import { computeDispatchLayout, tokensPerDestination } from '../../../dist/ep/dispatch-layout.js';
import { recordLayout } from '../../../dist/ep/cuda/node/plan.js';

/** The cpu reference's layout of one rank's topkIdx, with its per-node token lists (nodeTokens). */
export function hostLayout(topkIdx, T, k, E, R, P) {
  const layout = computeDispatchLayout(topkIdx, T, k, E, R, P);
  const N = R / P;
  const isTokenInNode = new Uint8Array(T * N);
  for (let i = 0; i < T * R; i++) if (layout.isTokenInRank[i]) isTokenInNode[Math.floor(i / R) * N + Math.floor((i % R) / P)] = 1;
  return { ...layout, isTokenInNode, nodeTokens: tokensPerDestination(isTokenInNode, T, N), sendTokens: tokensPerDestination(layout.isTokenInRank, T, R) };
}

/** Records of `tokens`: row bytes, f32 scales, (k > 0) i32 global ids and f32 weights, padded. */
export function hostRecords(tokens, { rows, rowBytes, scales, S, idx, weights, k }) {
  const record = recordLayout(rowBytes, S, k);
  const out = new Uint8Array(tokens.length * record.bytes);
  const view = new DataView(out.buffer);
  tokens.forEach((t, q) => {
    const at = q * record.bytes;
    out.set(rows.subarray(t * rowBytes, (t + 1) * rowBytes), at);
    for (let i = 0; i < S; i++) view.setFloat32(at + rowBytes + 4 * i, scales[t * S + i], true);
    for (let c = 0; c < k; c++) {
      view.setInt32(at + rowBytes + 4 * S + 4 * c, idx[t * k + c], true);
      view.setFloat32(at + rowBytes + 4 * S + 4 * k + 4 * c, weights[t * k + c], true);
    }
  });
  return { record, bytes: out };
}

export function bytesOf(t) {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.byteLength);
}

/** Runs `run`, reports the checks, closes the stream and the job, and exits with the verdict. */
export async function runAndExit({ pg, check, stream, run }) {
  let code = 1;
  try {
    await run();
    code = check.report({ worldSize: pg.worldSize });
  } catch (e) {
    check.fail('exception', e?.stack ?? String(e));
    code = check.report({ worldSize: pg.worldSize });
  }
  stream.close();
  await pg.close();
  process.exit(code);
}
