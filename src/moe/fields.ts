/** The MoE kernels' baton layouts, read once from the addon (native/moe/moe_fields.h owns them). */
import { requireCuda, type NativeMoeFields } from '../native/index.js';

let fields: NativeMoeFields | undefined;

export function moeFields(): NativeMoeFields {
  fields ??= requireCuda('MoE kernels').moeFields();
  return fields;
}

const batons = new Map<string, BigInt64Array>();

/** A zeroed baton for the kernel `name`, reused across calls (the addon reads it synchronously). */
export function batonFor(name: keyof Omit<NativeMoeFields, 'maxTopkExperts' | 'maxTopkGroups' | 'maxTopk'>): BigInt64Array {
  let b = batons.get(name);
  if (!b) {
    b = new BigInt64Array(moeFields()[name].length);
    batons.set(name, b);
  }
  b.fill(0n);
  return b;
}
