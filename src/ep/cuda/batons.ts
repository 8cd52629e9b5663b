/**
 * Argument batons for the native EP launches: one BigInt64Array per kind,
 * reused across calls, whose slot names come from the addon itself
 * (EpBuffer.batonLayout()), so TypeScript and C++ cannot disagree.
 */
import { WideepError } from '../../errors.js';

export type FieldMap = Record<string, number> & { length: number };

export class Baton {
  readonly array: BigInt64Array;
  readonly #fields: FieldMap;

  constructor(fields: FieldMap) {
    this.#fields = fields;
    this.array = new BigInt64Array(fields.length);
  }

  /** Zeroes every slot (null pointers, false flags) before a launch fills it. */
  reset(): this {
    this.array.fill(0n);
    return this;
  }

  set(field: string, value: number | bigint | boolean): this {
    const i = this.#fields[field];
    if (i === undefined) throw new WideepError('ERR_PROTOCOL', `the addon has no baton field '${field}'; rebuild it`);
    this.array[i] = typeof value === 'bigint' ? value : BigInt(Number(value));
    return this;
  }
}
