/**
 * The network-leg kernels (native/ep/node_leg.h) with tensors: each call
 * enqueues one launch on `stream` and checks nothing the caller checked.
 */
import { callNative } from '../../../cuda/call.js';
import type { Stream } from '../../../cuda/stream.js';
import { requireCuda, type CudaBinding, type NativeNodeLegFields } from '../../../native/index.js';
import type { Tensor } from '../../../tensor/tensor.js';
import { Baton } from '../batons.js';
import type { RecordLayout } from './plan.js';

/** What nodeLayout writes; the optional outputs only when given. */
export interface NodeLayoutOutputs {
  isTokenInRank: Tensor;
  numTokensPerRank: Tensor;
  numTokensPerExpert: Tensor;
  isTokenInNode: Tensor;
  numTokensPerNode: Tensor;
  badIds: Tensor;
  sendList?: Tensor;
  posInNode?: Tensor;
  header?: Tensor;
}

const ptr = (t: Tensor | undefined) => (t ? t.ptr : 0n);

/** The record's shape, which pack writes and unpack reads. */
function withRecord(b: Baton, record: RecordLayout): Baton {
  return b.set('rowBytes', record.rowBytes).set('scalesPerRow', record.scalesPerRow).set('topk', record.topk).set('recordBytes', record.bytes);
}

export class NodeLegKernels {
  readonly #cuda: CudaBinding;
  readonly #layout: Baton;
  readonly #pack: Baton;
  readonly #unpack: Baton;
  readonly #reduce: Baton;

  constructor() {
    this.#cuda = requireCuda('EpBuffer (cuda, across nodes)');
    const fields: NativeNodeLegFields = this.#cuda.nodeLegFields();
    this.#layout = new Baton(fields.layout);
    this.#pack = new Baton(fields.pack);
    this.#unpack = new Baton(fields.unpack);
    this.#reduce = new Baton(fields.reduce);
  }

  /** topkIdx: i32 [T, k] global ids. */
  layout(topkIdx: Tensor, numExperts: number, numRanks: number, ranksPerNode: number, out: NodeLayoutOutputs, stream: Stream): void {
    const b = this.#layout
      .reset()
      .set('topkIdx', topkIdx.ptr)
      .set('numTokens', topkIdx.shape[0]!)
      .set('topk', topkIdx.shape[1]!)
      .set('numExperts', numExperts)
      .set('numRanks', numRanks)
      .set('ranksPerNode', ranksPerNode)
      .set('isTokenInRank', out.isTokenInRank.ptr)
      .set('numTokensPerRank', out.numTokensPerRank.ptr)
      .set('numTokensPerExpert', out.numTokensPerExpert.ptr)
      .set('isTokenInNode', out.isTokenInNode.ptr)
      .set('numTokensPerNode', out.numTokensPerNode.ptr)
      .set('sendList', ptr(out.sendList))
      .set('posInNode', ptr(out.posInNode))
      .set('header', ptr(out.header))
      .set('badIds', out.badIds.ptr);
    callNative(() => this.#cuda.nodeLayout(b.array, stream.native));
  }

  /** Records of the tokens `list` names (its first `n`), into `out`. topkIdx/topkWeights: with record.topk > 0. */
  pack(x: Tensor, xScales: Tensor | undefined, topkIdx: Tensor | undefined, topkWeights: Tensor | undefined, list: Tensor, n: number, record: RecordLayout, out: Tensor, stream: Stream): void {
    const b = withRecord(this.#pack.reset(), record)
      .set('x', x.ptr)
      .set('xScales', ptr(xScales))
      .set('topkIdx', ptr(topkIdx))
      .set('topkWeights', ptr(topkWeights))
      .set('list', list.ptr)
      .set('numRecords', n)
      .set('out', out.ptr);
    callNative(() => this.#cuda.nodePack(b.array, stream.native));
  }

  /** `n` records into rows, scales, and ids of experts [expertBegin, expertEnd) made local (-1 elsewhere). */
  unpack(
    records: Tensor,
    n: number,
    record: RecordLayout,
    experts: { begin: number; end: number },
    out: { x: Tensor; xScales?: Tensor; topkIdx?: Tensor; topkWeights?: Tensor },
    stream: Stream,
  ): void {
    const b = withRecord(this.#unpack.reset(), record)
      .set('records', records.ptr)
      .set('numRecords', n)
      .set('expertBegin', experts.begin)
      .set('expertEnd', experts.end)
      .set('x', out.x.ptr)
      .set('xScales', ptr(out.xScales))
      .set('topkIdx', ptr(out.topkIdx))
      .set('topkWeights', ptr(out.topkWeights));
    callNative(() => this.#cuda.nodeUnpack(b.array, stream.native));
  }

  /** out[t] = bf16(sum over nodes of rows[posInNode[t, b]], + biases); outWeights alike from weights. */
  reduce(
    rows: Tensor,
    weights: Tensor | undefined,
    posInNode: Tensor,
    bias: readonly Tensor[],
    out: Tensor,
    outWeights: Tensor | undefined,
    stream: Stream,
  ): void {
    const [T, N] = posInNode.shape as [number, number];
    const b = this.#reduce
      .reset()
      .set('rows', rows.ptr)
      .set('weights', ptr(weights))
      .set('posInNode', posInNode.ptr)
      .set('numTokens', T)
      .set('numNodes', N)
      .set('hidden', out.shape[1]!)
      .set('topk', outWeights ? outWeights.shape[1]! : 0)
      .set('bias0', ptr(bias[0]))
      .set('bias1', ptr(bias[1]))
      .set('out', out.ptr)
      .set('outWeights', ptr(outWeights));
    callNative(() => this.#cuda.nodeReduce(b.array, stream.native));
  }
}
