/**
 * Argument batons for the native EP launches: one BigInt64Array per kind,
 * reused across calls, whose slot names come from the addon itself
 * (EpBuffer.batonLayout()), so TypeScript and C++ cannot disagree.
 */
import { WideepError } from '../../errors.js';

export type FieldMap = Record<string, number> & { length: number };

export class Baton {
  readonly array: BigInt64Array;
  /** The same slots as 32-bit halves (little-endian): small integers go in without a BigInt each. */
  readonly #halves: Int32Array;
  readonly #fields: FieldMap;

  constructor(fields: FieldMap) {
    this.#fields = fields;
    this.array = new BigInt64Array(fields.length);
    this.#halves = new Int32Array(this.array.buffer);
  }

  /** Zeroes every slot (null pointers, false flags) before a launch fills it. */
  reset(): this {
    this.array.fill(0n);
    return this;
  }

  set(field: string, value: number | bigint | boolean): this {
    const i = this.#fields[field];
    if (i === undefined) throw new WideepError('ERR_PROTOCOL', `the addon has no baton field '${field}'; rebuild it`);
    if (typeof value === 'bigint') {
      this.array[i] = value;
      return this;
    }
    const n = Number(value);
    if (n === (n | 0)) {
      this.#halves[2 * i] = n;
      this.#halves[2 * i + 1] = n >> 31; // sign extension
    } else {
      this.array[i] = BigInt(n);
    }
    return this;
  }
}
