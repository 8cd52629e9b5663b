// Runs wideep's masked fp8 grouped GEMM (native/moe/fp8_masked_gemm.cu) on small
// shapes, for run.sh's `sanitize` step to run under compute-sanitizer: an access
// out of bounds, a shared-memory race or a misused barrier shows as a sanitizer
// error. The results themselves are checked by test/gpu/expert-compute.test.ts.
// Counts cover an empty expert, a partial tile, two and three 64-row passes,
// and a negative and an oversized count (clamped); K = 384 has fewer 128-wide
// blocks than the kernel's 4 pipeline stages, K = 1024 more.
import { Stream, Tensor, fillRandom, groupedLinear } from '../../dist/index.js';

const stream = new Stream(0);
const on = { device: 'cuda:0', stream };
const [E, M, N] = [6, 150, 256];
const counts = Tensor.from(Int32Array.from([0, 5, 70, 150, -2, 999]), { shape: [E] });
for (const K of [384, 1024]) {
  const x = fillRandom(Tensor.empty([E, M, K], 'fp8e4m3', on), 1, { kind: 'normal' }, stream);
  const w = fillRandom(Tensor.empty([E, N, K], 'fp8e4m3', on), 2, { kind: 'normal', std: 0.05 }, stream);
  const ws = fillRandom(Tensor.empty([E, N / 128, K / 128], 'f32', on), 3, { kind: 'uniform', low: 0.5, high: 1 }, stream);
  const c = await counts.to('cuda:0', { stream });
  for (const layout of ['rows', 'blocks']) {
    const xs = fillRandom(Tensor.empty(layout === 'rows' ? [E, M, K / 128] : [E, K / 128, M], 'f32', on), 4, { kind: 'uniform', low: 0.5, high: 1 }, stream);
    const out = groupedLinear({ x, xScales: xs, xScalesLayout: layout, weight: w, weightScales: ws, counts: c, strategy: 'masked', stream });
    await stream.synchronize();
    console.log(`masked K=${K} ${layout}: ran`);
    out.close();
    xs.close();
  }
  for (const t of [x, w, ws, c]) t.close();
}
stream.close();
