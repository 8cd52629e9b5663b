import { parseArgs } from 'node:util';

import { capabilities, type Capabilities } from '../../capabilities.js';
import { rebuildAdvice } from '../../native/index.js';
import { toJson, type CliCommand } from '../command.js';

const USAGE = `usage: wideep doctor [--json]

Reports the Node version, the native addon (path, CUDA build flags), the CUDA
driver and runtime, every GPU, the peer-access matrix and NCCL. Without a GPU
it says why and exits 0: the cpu backend works everywhere.`;

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(0)} GiB`;
}

export function renderDoctor(c: Capabilities): string {
  const lines: string[] = [];
  lines.push(`node     ${c.node} (${c.platform} ${c.arch})`);
  if (c.addon.loaded) {
    const cuda = c.addon.cuda ? `CUDA ${c.addon.cudaRuntimeCompiled} for ${c.addon.cudaArchs.join(', ')}` : 'no CUDA';
    lines.push(`addon    ${c.addon.path} (${cuda})`);
  } else {
    lines.push('addon    not loaded');
    for (const a of c.addon.attempts) lines.push(`           ${a.path}: ${a.cause}\n           fix: ${a.fix}`);
  }
  if (c.cuda.driverVersion || c.cuda.runtimeVersion) {
    lines.push(`cuda     driver ${c.cuda.driverVersion ?? 'none'}, runtime ${c.cuda.runtimeVersion ?? '?'}`);
  }
  if (c.cuda.available) {
    lines.push(`gpus     ${c.gpus.length}`);
    for (const g of c.gpus) {
      lines.push(
        `  ${g.index}  ${g.name}  cc ${g.computeCapability}  ${gib(g.memoryBytes)}  ${g.smCount} SMs  ${g.pciBusId}` +
          (g.supported ? '' : '  (not supported by this build)'),
      );
    }
    if (c.gpus.length > 1) {
      const all = c.peerAccess.every((row) => row.every(Boolean));
      lines.push(`peers    ${all ? 'all pairs have peer access' : 'incomplete:'}`);
      if (!all) c.peerAccess.forEach((row, i) => lines.push(`  ${i}  ${row.map((ok) => (ok ? 'Y' : '.')).join(' ')}`));
    }
  } else {
    lines.push(`gpus     none: ${c.cuda.reason ?? 'no GPU visible'}`);
    lines.push('         the cpu backend (simulated ranks) is used instead');
  }
  for (const [label, lib] of [['nccl', c.nccl], ['cublasLt', c.cublasLt]] as const) {
    if (lib.found) {
      lines.push(`${label.padEnd(9)}${lib.version} at ${lib.path}`);
    } else {
      lines.push(`${label.padEnd(9)}not found: ${lib.reason}`);
      for (const t of lib.tried) lines.push(`           tried ${t.path} (${t.source})${t.error ? `: ${t.error}` : ''}`);
    }
  }
  for (const w of c.warnings) lines.push(`warning  ${w}`);
  const advice = rebuildAdvice();
  if (advice) lines.push(`rebuild  ${advice}`);
  return lines.join('\n');
}

export const command: CliCommand = {
  name: 'doctor',
  summary: 'report the addon, CUDA, GPUs, peer access, NCCL and cuBLASLt',
  usage: USAGE,
  async run(argv, io) {
    const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false } }, strict: true });
    const caps = capabilities();
    io.out(values.json ? toJson(caps) : renderDoctor(caps));
    return 0;
  },
};
