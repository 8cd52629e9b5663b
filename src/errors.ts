/**
 * The one error class of the library. `code` is stable and meant for programs;
 * `status` carries the raw CUDA/NCCL/cuBLAS status where one exists.
 */
export type ErrorCode =
  | 'ERR_INVALID_ARG'
  | 'ERR_SHAPE'
  | 'ERR_DTYPE'
  | 'ERR_CLOSED'
  | 'ERR_TIMEOUT'
  | 'ERR_BUSY'
  | 'ERR_NO_GPU'
  | 'ERR_NO_ADDON'
  | 'ERR_NCCL_NOT_FOUND'
  | 'ERR_BLAS_NOT_FOUND'
  | 'ERR_PEER'
  | 'ERR_PROTOCOL'
  | 'ERR_AUTH'
  | 'ERR_UNSUPPORTED'
  | `CUDA_ERROR_${string}`
  | `NCCL_${string}`
  | `CUBLAS_STATUS_${string}`;

export class WideepError extends Error {
  readonly code: ErrorCode;
  readonly status: number | undefined;

  constructor(code: ErrorCode, message: string, options?: { status?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WideepError';
    this.code = code;
    this.status = options?.status;
  }
}

export function isWideepError(e: unknown, code?: ErrorCode): e is WideepError {
  return e instanceof WideepError && (code === undefined || e.code === code);
}

/** Describes a value for error messages: type plus a short rendering. */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  if (Array.isArray(v)) return `array of length ${v.length}`;
  if (ArrayBuffer.isView(v)) return `${v.constructor.name} of length ${(v as unknown as { length: number }).length}`;
  const name = (v as object).constructor?.name;
  return name ? `${name} object` : 'object';
}

export function invalidArg(what: string, expected: string, got: unknown): WideepError {
  return new WideepError('ERR_INVALID_ARG', `${what}: expected ${expected}, got ${describeValue(got)}`);
}

export function assertInteger(what: string, v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`;
    throw invalidArg(what, range, v);
  }
  return v;
}

/**
 * Re-labels an error thrown by the addon (a plain Error with `code`/`status`
 * properties) as a WideepError whose stack points at the caller.
 */
export function fromNative(e: unknown, callSite?: Error): WideepError {
  if (e instanceof WideepError) return e;
  const err = e as { code?: unknown; status?: unknown; message?: unknown };
  const code = typeof err?.code === 'string' ? (err.code as ErrorCode) : 'ERR_INVALID_ARG';
  const status = typeof err?.status === 'number' ? err.status : undefined;
  const out = new WideepError(code, String(err?.message ?? e), { status, cause: e });
  if (callSite?.stack) out.stack = `WideepError: ${out.message}\n${callSite.stack.split('\n').slice(1).join('\n')}`;
  return out;
}
