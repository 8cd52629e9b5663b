/**
 * One rank of `wideep bench moe --ranks N` (started by the command through
 * the launcher): the layer with its experts spread over the N ranks, timed
 * as at one rank, then one JSON report line for the command to fold.
 */
import { Communicator } from '../../comm/communicator.js';
import { WideepError } from '../../errors.js';
import { initProcessGroup } from '../../runtime/process-group.js';
import { MOE_BENCH_VAR, type MoeRankReport, type MoeWorkerSettings } from './moe-ranks.js';
import { measureLayer } from './moe-measure.js';

const settings = JSON.parse(process.env[MOE_BENCH_VAR] ?? 'null') as MoeWorkerSettings | null;
if (!settings) throw new WideepError('ERR_INVALID_ARG', `${MOE_BENCH_VAR} is not set; run this through 'wideep bench moe --ranks N'`);
const pg = await initProcessGroup();
if (pg.device === undefined) throw new WideepError('ERR_NO_GPU', `bench moe worker: rank ${pg.rank} has no GPU (local rank ${pg.localRank})`);
// NCCL refuses two ranks on one GPU: ranks sharing it are not lined up before each run.
const comm = settings.shape.sharedGpu ? undefined : await Communicator.create(pg);
try {
  const show = (text: string) => (pg.rank === 0 && text ? process.stderr.write(`${text}\n`) : undefined);
  const layer = await measureLayer(settings.shape, { iters: settings.iters, warmup: settings.warmup, show, group: pg, comm });
  const report: MoeRankReport = { rank: pg.rank, checks: 0, failures: [], layer };
  process.stdout.write(`${JSON.stringify(report)}\n`);
} finally {
  comm?.close();
  await pg.close();
}
