/**
 * Where a command's cuda ranks run (`wideep demo`, `wideep bench moe`): one
 * process per GPU through the launcher, or every rank on GPU 0.
 */
import type { Capabilities } from '../capabilities.js';
import { WideepError } from '../errors.js';

/**
 * Where `ranks` cuda ranks run: one GPU each, or all on GPU 0 with `share`
 * (slow, time-sliced, but the same logic across processes). More ranks than
 * GPUs without `share`, or GPUs that cannot map each other's memory, are refused.
 */
export function cudaRankPlacement(
  caps: Pick<Capabilities, 'gpus' | 'peerAccess'>,
  ranks: number,
  share: boolean,
  /** Another way the command offers, appended to the refusal (e.g. ', --backend cpu simulates them'). */
  otherwise = '',
): { env: Record<string, string>; where: string } {
  const gpus = caps.gpus.length;
  if (share) return { env: { WIDEEP_DEVICE: '0' }, where: `${ranks} rank${ranks === 1 ? '' : 's'} sharing GPU 0` };
  if (ranks > gpus) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `--ranks ${ranks}: the cuda backend runs one rank per GPU and ${gpus} ${gpus === 1 ? 'is' : 'are'} visible; ` +
        `--share-gpu puts every rank on GPU 0${otherwise}`,
    );
  }
  for (let i = 0; i < ranks; i++) {
    for (let j = 0; j < ranks; j++) {
      if (!caps.peerAccess[i]?.[j]) {
        throw new WideepError('ERR_UNSUPPORTED', `--ranks ${ranks}: GPU ${i} cannot map GPU ${j}'s memory (no peer access), which the EP kernels need; try fewer ranks or --share-gpu`);
      }
    }
  }
  return { env: {}, where: `${ranks} rank${ranks === 1 ? '' : 's'}, one GPU each` };
}
