/**
 * Both halves of the store's handshake (the frames are listed in
 * protocol.ts, the proofs in auth.ts). Its first answer comes at once from a
 * store, so a client learns within seconds that the port holds something
 * else; and neither side serves or trusts the other before the proofs match.
 */
import { WideepError } from '../../errors.js';
import { NONCE_BYTES, clientProof, newNonce, proofMatches, serverProof } from './auth.js';
import { MAX_IDENTITY_BYTES, checkIdentity } from './identity.js';
import { FrameReader, PROTOCOL_MAGIC, PROTOCOL_VERSION, protocolError, type Field } from './protocol.js';

/** A token refused, either way: ERR_AUTH, which the caller fixes with the right secret, not a rebuild. */
function authError(message: string): WideepError {
  return new WideepError('ERR_AUTH', `store authentication: ${message}`);
}

/** How long a client waits for a store's first answer, and a server for a client's proof. */
export const CLIENT_HANDSHAKE_MS = 5_000;
export const SERVER_HANDSHAKE_MS = 10_000;

const PROOF_BYTES = 32;

// ---- client side -----------------------------------------------------------

export interface ClientHandshake {
  clientNonce: Buffer;
  hello: Field[];
}

export function startHandshake(): ClientHandshake {
  const clientNonce = newNonce();
  return { clientNonce, hello: [{ u32: PROTOCOL_MAGIC }, { u32: PROTOCOL_VERSION }, { bytes: clientNonce }] };
}

/**
 * Reads the store's answer to the hello and returns the proof to send back.
 * A store without a token is accepted only by a client without one, and a
 * store with one only once it has proven it holds the same.
 */
export function answerHello(r: FrameReader, h: ClientHandshake, token: string | undefined, identity: string, where: string): Field[] {
  const magic = r.u32();
  if (magic !== PROTOCOL_MAGIC) throw protocolError(`${where} answered with magic 0x${magic.toString(16)}: not a wideep store`);
  const version = r.u32();
  if (version !== PROTOCOL_VERSION) {
    throw protocolError(`the store at ${where} speaks version ${version} of the protocol, this client ${PROTOCOL_VERSION}`);
  }
  const tokenRequired = r.u8() === 1;
  const serverNonce = Buffer.from(r.bytes(NONCE_BYTES));
  const proof = r.bytes(PROOF_BYTES);
  r.end();
  if (serverNonce.length !== NONCE_BYTES) throw protocolError(`the store at ${where} sent a nonce of ${serverNonce.length} bytes`);
  if (!tokenRequired) {
    if (token !== undefined) {
      throw authError(
        `the store at ${where} has no token: it is not this job's store (another job's, or one started without WIDEEP_STORE_TOKEN)`,
      );
    }
    return [{ bytes: new Uint8Array(0) }, { bytes: Buffer.from(identity) }];
  }
  if (token === undefined) {
    throw authError(`the store at ${where} needs the job's token (WIDEEP_STORE_TOKEN, or --rdzv-token for wideep launch)`);
  }
  if (!proofMatches(serverProof(token, h.clientNonce, serverNonce), proof)) {
    throw authError(`the store at ${where} does not hold this job's token: another job's store, or the nodes were given different tokens`);
  }
  return [{ bytes: clientProof(token, serverNonce, h.clientNonce, identity) }, { bytes: Buffer.from(identity) }];
}

// ---- server side -----------------------------------------------------------

export interface ServerHandshake {
  clientNonce: Buffer;
  serverNonce: Buffer;
}

/** Reads a client's hello; returns the nonces and the answer's fields. */
export function readHello(r: FrameReader, token: string | undefined): { state: ServerHandshake; answer: Field[] } {
  const magic = r.u32();
  if (magic !== PROTOCOL_MAGIC) throw protocolError(`unknown protocol magic 0x${magic.toString(16)}`);
  const version = r.u32();
  if (version !== PROTOCOL_VERSION) throw protocolError(`protocol version ${version}; this store speaks version ${PROTOCOL_VERSION}`);
  const clientNonce = Buffer.from(r.bytes(NONCE_BYTES));
  r.end();
  if (clientNonce.length !== NONCE_BYTES) throw protocolError(`a nonce of ${clientNonce.length} bytes`);
  const serverNonce = newNonce();
  const proof = token === undefined ? new Uint8Array(0) : serverProof(token, clientNonce, serverNonce);
  return {
    state: { clientNonce, serverNonce },
    answer: [{ u32: PROTOCOL_MAGIC }, { u32: PROTOCOL_VERSION }, { u8: token === undefined ? 0 : 1 }, { bytes: serverNonce }, { bytes: proof }],
  };
}

/** Checks a client's proof; returns the identity it registers ('' for none). */
export function readAuth(r: FrameReader, token: string | undefined, state: ServerHandshake): string {
  const proof = r.bytes(PROOF_BYTES);
  const identity = r.string(MAX_IDENTITY_BYTES);
  r.end();
  if (token !== undefined && !proofMatches(clientProof(token, state.serverNonce, state.clientNonce, identity), proof)) {
    throw authError('authentication failed: the client does not hold this store\'s token');
  }
  if (identity !== '') checkIdentity(identity);
  return identity;
}

/** An error the handshake may end with that is worth another attempt (the store is busy, not wrong). */
export function retryableHandshakeError(e: unknown): boolean {
  return e instanceof WideepError && e.code === 'ERR_BUSY';
}
