import { WideepError } from '../../errors.js';
import type { CliCommand } from '../command.js';

const USAGE = `usage: wideep bench <nccl|ep|experts|moe> [options]

  nccl     NCCL all-reduce bus bandwidth and all-to-all, beside PyTorch's NCCL
  ep       dispatch/combine (--mode normal | low-latency) against DeepEP's metrics
  experts  grouped expert GEMMs and the router on one GPU, beside PyTorch
  moe      one MoE layer (prefill, decode, TBO, CUDA graph) on one GPU, beside PyTorch

Run 'wideep bench <suite> --help' for a suite's options. Every suite takes --json.`;

const SUITES: Record<string, () => Promise<{ command: CliCommand }>> = {
  nccl: () => import('../bench/nccl.js'),
  ep: () => import('../bench/ep.js'),
  experts: () => import('../bench/experts.js'),
  moe: () => import('../bench/moe.js'),
};

export const command: CliCommand = {
  name: 'bench',
  summary: 'benchmarks: NCCL collectives, EP dispatch/combine, expert compute, the MoE layer, with --json output',
  usage: USAGE,
  async run(argv, io) {
    const [suite, ...rest] = argv;
    const load = suite ? SUITES[suite] : undefined;
    if (!load) throw new WideepError('ERR_INVALID_ARG', `bench: expected a suite (nccl, ep, experts or moe), got ${JSON.stringify(suite ?? null)}`);
    const { command: sub } = await load();
    if (rest.includes('--help') || rest.includes('-h')) {
      io.out(sub.usage);
      return 0;
    }
    return sub.run(rest, io);
  },
};
