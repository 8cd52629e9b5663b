/** `wideep <command>`: the CLI entry. Commands load lazily so `--help` stays instant. */
import { processIo, reportError, type CliCommand, type CliIo } from './command.js';

interface Entry {
  summary: string;
  load(): Promise<{ command: CliCommand }>;
}

export const COMMANDS: Record<string, Entry> = {
  doctor: { summary: 'report the addon, CUDA, GPUs, peer access and NCCL', load: () => import('./commands/doctor.js') },
  bench: {
    summary: 'benchmarks: NCCL collectives and EP dispatch/combine, with --json output',
    load: () => import('./commands/bench.js'),
  },
  demo: {
    summary: 'run a DeepSeek-style MoE layer on the GPUs (or simulated ranks without one) and check it against a reference',
    load: () => import('./commands/demo.js'),
  },
  eplb: {
    summary: "place redundant experts with DeepSeek's EPLB from a [layers][experts] load file",
    load: () => import('./commands/eplb.js'),
  },
  plan: {
    summary: 'plan a WideEP deployment: group sizes, memory, traffic, expert placement',
    load: () => import('./commands/plan.js'),
  },
  launch: {
    summary: 'start one worker process per GPU, with rank variables and a shared store',
    load: () => import('./commands/launch.js'),
  },
};

/** Commands whose later arguments belong to someone else (a worker script, a sub-suite). */
const PASSTHROUGH = new Set(['launch', 'bench']);

export function helpText(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  const lines = Object.entries(COMMANDS).map(([name, e]) => `  ${name.padEnd(width)}  ${e.summary}`);
  return [
    'wideep: wide expert parallelism (DP attention + EP MoE) for Node.js',
    '',
    'usage: wideep <command> [options]',
    '',
    'commands:',
    ...lines,
    '',
    "Run 'wideep <command> --help' for a command's options.",
  ].join('\n');
}

export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    io.out(helpText());
    return name ? 0 : 2;
  }
  if (name === '--version') {
    const { createRequire } = await import('node:module');
    io.out((createRequire(import.meta.url)('../../package.json') as { version: string }).version);
    return 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    io.err(`wideep: unknown command '${name}': expected one of ${Object.keys(COMMANDS).join(', ')} (run 'wideep --help' for usage)`);
    return 2;
  }
  const { command } = await entry.load();
  const own = PASSTHROUGH.has(name) ? rest.slice(0, 1) : rest;
  if (own.includes('--help') || own.includes('-h')) {
    io.out(command.usage);
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (e) {
    return reportError(e, io, name);
  }
}
