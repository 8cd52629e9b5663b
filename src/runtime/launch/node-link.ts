/**
 * What the launchers of a job over several nodes say to each other, through
 * node 0's store. Each launcher registers as `node/<i>`, so what it writes
 * under `@node/<i>/` is known to come from it (store/identity.ts):
 *
 * - `@node/<i>/joined`: it is there. Every launcher waits for all of them,
 *   up to the rendezvous timeout, before starting a worker.
 * - `@node/<i>/failure`: a rank of node i failed (a LaunchFailure, JSON).
 * - `@node/<i>/done`: every rank of node i exited 0.
 * - `@node/0/verdict`: the failure that stops the job. Node 0 decides it
 *   alone (the first failure it hears of: its own ranks', another node's
 *   report, or a node's launcher leaving the store without being done), so
 *   every node names the same one, and no other connection can write it.
 */
import { WideepError, isWideepError } from '../../errors.js';
import { TcpStoreClient, leftKey, ownedKey } from '../store/index.js';
import { describeTimeout } from '../store/protocol.js';

export interface LaunchFailure {
  /** The rank that failed; null when a node's launcher itself was lost. */
  rank: number | null;
  nodeRank: number;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  error?: string;
}

/** Why another node stops this one: a failure, or the loss of node 0's store. */
export type RemoteStop = { failure: LaunchFailure } | { lost: string };

export interface NodeLinkOptions {
  host: string;
  port: number;
  nodeRank: number;
  nnodes: number;
  token: string;
  /** Limit for reaching node 0 and for every node to join (ms). */
  rdzvTimeoutMs: number;
  signal: AbortSignal;
  log: (text: string) => void;
}

const nodeId = (i: number) => `node/${i}`;
const key = (i: number, name: 'joined' | 'failure' | 'done' | 'verdict') => ownedKey(nodeId(i), name);

function describeNodes(nodes: readonly number[]): string {
  const shown = nodes.slice(0, 8).join(', ');
  const list = nodes.length > 8 ? `${shown} and ${nodes.length - 8} more` : shown;
  return `node${nodes.length === 1 ? '' : 's'} ${list}`;
}

const decode = (bytes: Uint8Array) => JSON.parse(Buffer.from(bytes).toString('utf8')) as LaunchFailure;
/** A call of a closed link rejects with ERR_CLOSED: the job is over, nothing to report. */
const ignoreClosed = (e: unknown) => {
  if (!isWideepError(e, 'ERR_CLOSED')) throw e;
};

export class NodeLink {
  readonly #client: TcpStoreClient;
  readonly #o: NodeLinkOptions;
  #verdict: LaunchFailure | undefined;
  #onStop: ((why: RemoteStop) => void) | undefined;

  private constructor(client: TcpStoreClient, o: NodeLinkOptions) {
    this.#client = client;
    this.#o = o;
  }

  /**
   * Connects to node 0's store as `node/<i>` and waits until every node has,
   * within the rendezvous timeout (ERR_TIMEOUT naming the missing nodes).
   * Aborting `signal` ends either wait with ERR_CLOSED.
   */
  static async join(o: NodeLinkOptions): Promise<NodeLink> {
    const where = `${o.host}:${o.port}`;
    const limit = describeTimeout(o.rdzvTimeoutMs);
    if (o.nodeRank !== 0) o.log(`wideep launch: node ${o.nodeRank}: connecting to node 0 at ${where} (up to ${limit})`);
    const started = Date.now();
    const client = await TcpStoreClient.connect({
      host: o.host,
      port: o.port,
      token: o.token,
      identity: nodeId(o.nodeRank),
      timeoutMs: o.rdzvTimeoutMs,
      signal: o.signal,
    });
    const link = new NodeLink(client, o);
    const onAbort = () => void client.close({ drainMs: 0 });
    o.signal.addEventListener('abort', onAbort, { once: true });
    try {
      await client.set(key(o.nodeRank, 'joined'), '1');
      const others = Array.from({ length: o.nnodes }, (_, i) => i).filter((i) => i !== o.nodeRank);
      const missing = new Set(others);
      o.log(`wideep launch: node ${o.nodeRank}: waiting for ${describeNodes(others)} to join at ${where} (up to ${limit})`);
      const timeoutMs = Math.max(0, o.rdzvTimeoutMs - (Date.now() - started));
      await Promise.all(others.map((i) => client.get(key(i, 'joined'), { timeoutMs }).then(() => missing.delete(i)))).catch((e: unknown) => {
        if (!isWideepError(e, 'ERR_TIMEOUT')) throw e;
        throw new WideepError('ERR_TIMEOUT', `${describeNodes([...missing])} did not join within ${limit} (--rdzv-timeout)`);
      });
    } catch (e) {
      await client.close({ drainMs: 0 });
      throw o.signal.aborted ? new WideepError('ERR_CLOSED', 'the rendezvous was interrupted') : e;
    } finally {
      o.signal.removeEventListener('abort', onAbort);
    }
    return link;
  }

  /**
   * Starts listening for what stops this node from elsewhere: node 0 watches
   * every other node's failure report and departure, the others watch node
   * 0's verdict and their connection to its store. `onStop` is called once.
   */
  watch(onStop: (why: RemoteStop) => void): void {
    this.#onStop = onStop;
    const { nodeRank, nnodes } = this.#o;
    const forever = { timeoutMs: Infinity };
    if (nodeRank !== 0) {
      this.#client.get(key(0, 'verdict'), forever).then(
        (bytes) => {
          const f = decode(bytes);
          if (f.nodeRank !== nodeRank) this.#stop({ failure: f });
        },
        (e: unknown) => {
          if (isWideepError(e, 'ERR_CLOSED')) return;
          this.#stop({ lost: `lost the launchers' store at ${this.#o.host}:${this.#o.port} (${(e as Error).message})` });
        },
      );
      return;
    }
    // Node 0 hosts the store in this process: these calls end only when the link closes.
    const closing = () => {};
    for (let i = 1; i < nnodes; i++) {
      // The node comes from the key, which only node i's launcher can write, not from the record.
      this.#client.get(key(i, 'failure'), forever).then((bytes) => this.#decide({ ...decode(bytes), nodeRank: i }), closing);
      this.#client
        .get(leftKey(nodeId(i)), forever)
        // A launcher that is done leaves too; one that failed has reported it before leaving.
        .then(() => this.#client.get(key(i, 'done'), { timeoutMs: 0 }))
        .then(closing, (e: unknown) => {
          if (isWideepError(e, 'ERR_TIMEOUT')) {
            void this.#decide({ rank: null, nodeRank: i, exitCode: null, signal: null, error: 'left the job without a result' });
          }
        });
    }
  }

  /** Reports a failure of this node's ranks (node 0: it becomes the verdict unless one exists). */
  async report(f: LaunchFailure): Promise<void> {
    if (this.#o.nodeRank === 0) await this.#decide(f);
    else await this.#client.set(key(this.#o.nodeRank, 'failure'), JSON.stringify(f)).catch(() => {});
  }

  /**
   * Every rank here exited 0: says so, and on node 0 waits until every other
   * node has too (their workers may still run), or until `stopped` settles.
   */
  async finish(stopped: Promise<void>): Promise<void> {
    await this.#client.set(key(this.#o.nodeRank, 'done'), '1').catch(ignoreClosed);
    if (this.#o.nodeRank !== 0) return;
    const others = Array.from({ length: this.#o.nnodes - 1 }, (_, i) => key(i + 1, 'done'));
    if (others.length > 0) this.#o.log(`wideep launch: node 0: its ranks are done; waiting for the other nodes to finish`);
    await Promise.race([this.#client.wait(others, { timeoutMs: Infinity }).catch(ignoreClosed), stopped]);
  }

  close(): Promise<void> {
    return this.#client.close({ drainMs: 0 });
  }

  /** Node 0: the first failure heard of becomes the job's verdict. */
  async #decide(f: LaunchFailure): Promise<void> {
    if (this.#verdict) return;
    this.#verdict = f;
    if (f.nodeRank !== 0) this.#stop({ failure: f });
    await this.#client.set(key(0, 'verdict'), JSON.stringify(f)).catch(() => {});
  }

  #stop(why: RemoteStop): void {
    const onStop = this.#onStop;
    this.#onStop = undefined;
    onStop?.(why);
  }
}
