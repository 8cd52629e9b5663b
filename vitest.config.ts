import { defineConfig } from 'vitest/config';

// Three layers (docs/architecture.md "Test layers"): unit needs nothing, native needs the
// built addon but no GPU, gpu skips itself where no GPU is visible. GPU suites
// run one file at a time in forked processes so each owns its CUDA context.
const GPU_DEMO_TEST = 'test/unit/simulation/demo-gpu.test.ts';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          exclude: [GPU_DEMO_TEST],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'native',
          include: ['test/native/**/*.test.ts'],
          pool: 'forks',
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'gpu',
          include: ['test/gpu/**/*.test.ts', 'examples/**/*.test.mjs', GPU_DEMO_TEST],
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
