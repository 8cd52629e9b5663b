/** GPU facts the planner needs, with presets for the common GPUs. */

export interface HardwareSpec {
  /** Label for output. */
  gpu: string;
  /** Memory per GPU in bytes (what `cudaMemGetInfo` reports as total). */
  memoryBytes: number;
  /** NVLink bandwidth per GPU per direction, GB/s (1e9 B/s). */
  nvlinkGBps: number;
  /** RDMA bandwidth per GPU between nodes, GB/s (a 400 Gb/s NIC per GPU is 50). */
  rdmaGBps: number;
}

const MIB = 2 ** 20;

/** RDMA per GPU with one 400 Gb/s NIC per GPU. */
export const DEFAULT_RDMA_GBPS = 50;

/** Totals as `nvidia-smi` reports them; NVLink 4 is 450 GB/s per direction, NVLink 5 is 900. */
export const GPU_PRESETS: Readonly<Record<string, HardwareSpec>> = Object.freeze({
  h100: { gpu: 'H100', memoryBytes: 81559 * MIB, nvlinkGBps: 450, rdmaGBps: DEFAULT_RDMA_GBPS },
  h200: { gpu: 'H200', memoryBytes: 143771 * MIB, nvlinkGBps: 450, rdmaGBps: DEFAULT_RDMA_GBPS },
  b200: { gpu: 'B200', memoryBytes: 183359 * MIB, nvlinkGBps: 900, rdmaGBps: DEFAULT_RDMA_GBPS },
});

/** The planner's default GPU: the H200 of the project's machines. */
export const DEFAULT_GPU = 'h200';
