/**
 * Who a connection speaks for, and which keys only it may write.
 *
 * A client may register one identity in its handshake: `node/<i>` (the
 * launcher of node i) or `rank/<r>` (a worker). The server lets one
 * connection at a time hold an identity, and keys under `@<identity>/` are
 * written (set, add, compareSet, delete) only by the connection that holds
 * it; anyone authenticated may read them. So a message that claims to come
 * from node 1 ("rank 3 on node 1 exited with code 7") is trusted because of
 * the key it sits under, not because of what it says. Keys under `@store/`
 * are the server's own: when a connection holding an identity closes, the
 * server sets `@store/left/<identity>`, so that others can wait for it.
 */
import { WideepError } from '../../errors.js';

const IDENTITY = /^(node|rank)\/(0|[1-9]\d{0,8})$/;
const OWNED_KEY = /^@((?:node|rank)\/(?:0|[1-9]\d{0,8}))\//;
/** Longest identity, in UTF-8 bytes. */
export const MAX_IDENTITY_BYTES = 32;

/** Checks an identity given to a client (undefined: none). */
export function checkIdentity(identity: unknown): string | undefined {
  if (identity === undefined) return undefined;
  if (typeof identity !== 'string' || !IDENTITY.test(identity)) {
    throw new WideepError('ERR_INVALID_ARG', `store identity: expected "node/<i>" or "rank/<r>", got ${JSON.stringify(identity)}`);
  }
  return identity;
}

/** The key `name` under `identity`'s own prefix. */
export function ownedKey(identity: string, name: string): string {
  return `@${identity}/${name}`;
}

/** The key the server sets when the connection holding `identity` closes. */
export function leftKey(identity: string): string {
  return `@store/left/${identity}`;
}

/**
 * Why a connection holding `holder` (undefined: none) may not write `key`,
 * or undefined when it may.
 */
export function writeRefusal(key: string, holder: string | undefined): string | undefined {
  if (!key.startsWith('@')) return undefined;
  const owner = OWNED_KEY.exec(key)?.[1];
  if (owner === undefined) {
    return key.startsWith('@store/')
      ? `key ${JSON.stringify(key)} belongs to the store itself`
      : `key ${JSON.stringify(key)}: keys starting with @ are "@node/<i>/..." or "@rank/<r>/...", written by that identity only`;
  }
  if (owner === holder) return undefined;
  return `key ${JSON.stringify(key)} may be written only by the connection registered as ${owner} (this one is ${holder ?? 'anonymous'})`;
}
