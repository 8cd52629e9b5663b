import { parseArgs } from 'node:util';

import { WideepError } from '../../errors.js';
import { balancedness, gpuLoadsOf, slotLoadsFromLogical } from '../../planning/eplb-recorder.js';
import { rebalanceExperts, type EplbPolicy } from '../../planning/eplb.js';
import { readJsonFile, toLoadMatrix } from '../../planning/json-file.js';
import { parseIntFlag } from '../../planning/sglang-args.js';
import { reportError, toJson, type CliCommand } from '../command.js';

const USAGE = `usage: wideep eplb --weights w.json --replicas R --gpus P [--groups G] [--nodes M]
                   [--policy auto|hierarchical|global] [--json]

Runs DeepSeek's EPLB on the expert loads in w.json, a [layers][experts] array,
placing R physical experts on P GPUs in M nodes (G expert groups; G and M
default to 1). The policy is hierarchical when G is a multiple of M, global
otherwise, unless --policy says. --json prints {phy2log, log2phy, logcnt}:
  phy2log[l][slot]     the logical expert in each slot; GPU g holds slots g*R/P … (g+1)*R/P-1
  log2phy[l][e][k]     the slots of expert e, padded with -1 to R-E+1 columns
  logcnt[l][e]         replicas of expert e`;

const OPTIONS = {
  weights: { type: 'string' },
  replicas: { type: 'string' },
  groups: { type: 'string' },
  nodes: { type: 'string' },
  gpus: { type: 'string' },
  policy: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

function required(flag: string, v: string | undefined): string {
  if (v === undefined) throw new WideepError('ERR_INVALID_ARG', `${flag} is required`);
  return v;
}

function fmt(x: number): string {
  return x.toFixed(3);
}

export const command: CliCommand = {
  name: 'eplb',
  summary: "place redundant experts with DeepSeek's EPLB from a [layers][experts] load file",
  usage: USAGE,
  async run(argv, io) {
    try {
      const { values } = parseArgs({ args: argv, options: OPTIONS, strict: true });
      const weightsPath = required('--weights', values.weights);
      const weight = toLoadMatrix(readJsonFile(weightsPath, '--weights'), `--weights ${weightsPath}`);
      const numGpus = parseIntFlag('--gpus', required('--gpus', values.gpus), 1);
      const params = {
        numReplicas: parseIntFlag('--replicas', required('--replicas', values.replicas), 1),
        numGroups: values.groups === undefined ? 1 : parseIntFlag('--groups', values.groups, 1),
        numNodes: values.nodes === undefined ? 1 : parseIntFlag('--nodes', values.nodes, 1),
        numGpus,
        policy: (values.policy ?? 'auto') as EplbPolicy,
      };
      const { phy2log, log2phy, logcnt, policy } = rebalanceExperts(weight, params);
      if (values.json) {
        io.out(toJson({ phy2log, log2phy, logcnt }));
        return 0;
      }
      const E = weight[0]!.length;
      const R = params.numReplicas;
      const perGpu = R / numGpus;
      const lines = [
        `EPLB, ${policy} policy: ${weight.length} layers × ${E} experts -> ${R} slots on ${numGpus} GPUs (${params.numNodes} nodes, ${params.numGroups} groups)`,
      ];
      // Before: slot p holds expert p mod E (SGLang's initial placement), so the first R mod E experts have one more copy.
      const trivial = Array.from({ length: R }, (_, p) => p % E);
      const trivialCnt = Array.from({ length: E }, (_, e) => Math.floor(R / E) + (e < R % E ? 1 : 0));
      phy2log.forEach((row, l) => {
        const before = balancedness(gpuLoadsOf(slotLoadsFromLogical(weight[l]!, trivial, trivialCnt), numGpus));
        const slotLoads = slotLoadsFromLogical(weight[l]!, row, logcnt[l]!);
        const gpuLoads = gpuLoadsOf(slotLoads, numGpus);
        lines.push('', `layer ${l}: balancedness ${fmt(before)} -> ${fmt(balancedness(gpuLoads))}`);
        lines.push(`  phy2log ${JSON.stringify(row)}`);
        lines.push(`  logcnt  ${JSON.stringify(logcnt[l])}`);
        const width = String(numGpus - 1).length;
        for (let g = 0; g < numGpus; g++) {
          const experts = row.slice(g * perGpu, (g + 1) * perGpu).map((e) => String(e).padStart(String(E - 1).length));
          lines.push(`  GPU ${String(g).padStart(width)}: ${experts.join(' ')}   load ${gpuLoads[g]!.toFixed(1)}`);
        }
      });
      io.out(lines.join('\n'));
      return 0;
    } catch (e) {
      return reportError(e, io, 'eplb');
    }
  },
};
