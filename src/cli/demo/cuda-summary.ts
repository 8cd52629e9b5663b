/** What `wideep demo` prints after a cuda run: one line per step, the comparison, PASS or FAIL; or one JSON object. */
import type { DemoBackend } from './backend.js';
import type { CudaDemoRun } from './cuda-run.js';
import { GPU_DEMO_CONFIG, type DemoStepReport } from './gpu-layer.js';

export interface CudaStepSummary {
  step: number;
  kind: DemoStepReport['kind'];
  tokensPerRank: number[];
  /** The slowest rank's wall time of the step. */
  ms: number;
  /** The slowest rank's host time to enqueue it. */
  hostUs: number;
}

export interface CudaDemoSummary {
  pass: boolean;
  backend: 'cuda';
  backendReason: string;
  gpus: number;
  ranks: number;
  placement: string;
  seed: number;
  model: typeof GPU_DEMO_CONFIG;
  steps: CudaStepSummary[];
  comparison: {
    /** Output elements compared with the host reference, over all ranks. */
    checks: number;
    tokens: number;
    nearTies: number;
    /** The largest |error| / tolerance (below 1 passes). */
    worstRatio: number;
    failures: string[];
  };
}

export function cudaSummary(backend: DemoBackend, ranks: number, placement: string, seed: number, run: CudaDemoRun): CudaDemoSummary {
  const { reports } = run;
  const numSteps = Math.max(0, ...reports.map((r) => r.steps.length));
  const steps = Array.from({ length: numSteps }, (_, i): CudaStepSummary => {
    const at = reports.map((r) => r.steps[i]);
    return {
      step: i,
      kind: at.find((s) => s)!.kind,
      tokensPerRank: at.map((s) => s?.tokens ?? 0),
      ms: Math.max(...at.map((s) => s?.ms ?? 0)),
      hostUs: Math.max(...at.map((s) => s?.hostUs ?? 0)),
    };
  });
  const failures = reports.flatMap((r) => r.failures);
  if (reports.length < ranks) failures.push(`${ranks - reports.length} of ${ranks} ranks ended without a report${run.ok ? '' : ' (a worker failed; its output is above)'}`);
  const sum = (f: (r: CudaDemoRun['reports'][number]) => number) => reports.reduce((n, r) => n + f(r), 0);
  return {
    pass: run.ok && failures.length === 0,
    backend: 'cuda',
    backendReason: backend.reason,
    gpus: backend.gpus,
    ranks,
    placement,
    seed,
    model: GPU_DEMO_CONFIG,
    steps,
    comparison: {
      checks: sum((r) => r.checks),
      tokens: sum((r) => r.tokens),
      nearTies: sum((r) => r.nearTies),
      worstRatio: Math.max(0, ...reports.map((r) => r.worstRatio)),
      failures,
    },
  };
}

function stepLine(s: CudaStepSummary): string {
  const idle = s.tokensPerRank.flatMap((t, r) => (t === 0 ? [r] : []));
  const tokens = `${s.tokensPerRank.reduce((a, b) => a + b, 0)} tokens, per rank [${s.tokensPerRank.join(', ')}]${idle.length > 0 ? `; idle: rank ${idle.join(', ')}` : ''}`;
  const how =
    s.kind === 'prefill'
      ? `normal dispatch, eager: ${s.ms.toFixed(2)} ms${s.step === 0 ? ' (the first step includes cuBLASLt planning)' : ''}`
      : `low-latency dispatch, one CUDA graph replay: ${s.ms.toFixed(3)} ms, ${s.hostUs.toFixed(1)} µs of host time to launch`;
  return `step ${s.step}  ${s.kind}: ${tokens}\n        ${how} (slowest rank)`;
}

export function renderCudaDemo(s: CudaDemoSummary): string {
  const c = s.comparison;
  const lines = s.steps.map(stepLine);
  lines.push(
    `error     worst |error| ${c.worstRatio.toFixed(2)} of its tolerance (2^-5 of the output's magnitude + 1e-3) over ${c.checks} elements; ` +
      `${c.nearTies} of ${c.tokens} tokens within rounding of a routing tie left out`,
  );
  for (const f of c.failures.slice(0, 10)) lines.push(`problem   ${f}`);
  const where = `${s.ranks} rank${s.ranks === 1 ? '' : 's'} (${s.placement})`;
  lines.push(s.pass ? `PASS: the MoE layer on ${where} matches the host reference` : `FAIL: the MoE layer on ${where} does not match the host reference`);
  return lines.join('\n');
}
