/**
 * The store's shared-secret handshake. Both sides prove that they hold the
 * job's token without sending it: each sends a fresh random nonce, and each
 * answers with an HMAC-SHA256 of both nonces under the token, labelled by
 * role so that one side's proof is never valid as the other's. A recorded
 * handshake is useless on a new connection (new nonces), and a store of
 * another job (another token) is told apart from this job's before any key
 * is read or written.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

import { WideepError } from '../../errors.js';

/** Bytes of each side's nonce. */
export const NONCE_BYTES = 32;
/** Shortest token accepted: a secret, not a password someone could guess. */
export const MIN_TOKEN_LENGTH = 16;

const SERVER_LABEL = 'wideep store v2: server';
const CLIENT_LABEL = 'wideep store v2: client';

/** Checks a token given by the user; undefined stays undefined (no authentication). */
export function checkToken(what: string, token: unknown): string | undefined {
  if (token === undefined) return undefined;
  if (typeof token !== 'string' || token.length < MIN_TOKEN_LENGTH) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `${what}: expected a secret of at least ${MIN_TOKEN_LENGTH} characters (e.g. \`openssl rand -hex 32\`), ` +
        `got ${typeof token === 'string' ? `${token.length} characters` : typeof token}`,
    );
  }
  return token;
}

/** A fresh per-job secret. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

function proof(token: string, label: string, parts: readonly Uint8Array[]): Buffer {
  const mac = createHmac('sha256', token).update(label);
  for (const p of parts) mac.update(p);
  return mac.digest();
}

/** What the server sends to show that it holds the token. */
export function serverProof(token: string, clientNonce: Uint8Array, serverNonce: Uint8Array): Buffer {
  return proof(token, SERVER_LABEL, [clientNonce, serverNonce]);
}

/** What the client sends; it binds the identity it registers, so that a proof cannot be reused for another. */
export function clientProof(token: string, serverNonce: Uint8Array, clientNonce: Uint8Array, identity: string): Buffer {
  return proof(token, CLIENT_LABEL, [serverNonce, clientNonce, Buffer.from(identity, 'utf8')]);
}

/** Constant-time comparison of an expected proof with the one received. */
export function proofMatches(expected: Buffer, got: Uint8Array): boolean {
  return got.length === expected.length && timingSafeEqual(expected, got);
}
