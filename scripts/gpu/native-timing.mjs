// Times every native method of the addon: each function and each class's
// instance methods are wrapped, so that a script can say how much of a
// library call's host time is spent inside native code, per method. Used by
// call-costs.mjs and moe-call-costs.mjs.
import { requireCuda } from '../../dist/native/index.js';

const nativeTime = new Map();

function timed(key, fn) {
  return function (...args) {
    const t0 = performance.now();
    try {
      return fn.apply(this, args);
    } finally {
      const e = nativeTime.get(key) ?? { calls: 0, ms: 0 };
      e.calls++;
      e.ms += performance.now() - t0;
      nativeTime.set(key, e);
    }
  };
}

// The addon's methods are read-only on their prototypes, so each new
// instance gets timed own methods instead.
function instrument(obj, cls) {
  const proto = Object.getPrototypeOf(obj);
  for (const name of Object.getOwnPropertyNames(proto)) {
    const d = Object.getOwnPropertyDescriptor(proto, name);
    if (name !== 'constructor' && typeof d.value === 'function') {
      Object.defineProperty(obj, name, { value: timed(`${cls}.${name}`, d.value) });
    }
  }
  return obj;
}

/** Wraps the addon's methods (call once, before the library makes any native object); returns the addon. */
export function timeNativeCalls(where) {
  const cuda = requireCuda(where);
  for (const [cls, ctor] of Object.entries(cuda)) {
    if (typeof ctor !== 'function') continue;
    if (!/^[A-Z]/.test(cls)) {
      cuda[cls] = timed(cls, ctor);
    } else if (cls === 'Communicator') {
      cuda[cls] = { getUniqueId: () => ctor.getUniqueId(), init: async (...a) => instrument(await ctor.init(...a), cls) };
    } else if (cls === 'Graph') {
      // Graphs come from endCapture, a static method, not from the constructor.
      cuda[cls] = { beginCapture: timed('Graph.beginCapture', ctor.beginCapture), endCapture: (...a) => instrument(ctor.endCapture(...a), cls) };
    } else {
      cuda[cls] = new Proxy(ctor, { construct: (t, a) => instrument(Reflect.construct(t, a), cls) });
    }
  }
  return cuda;
}

/** Forgets the times so far. */
export function clearNativeTimes() {
  nativeTime.clear();
}

/** Mean microseconds per call of every native method timed since the last clear, with its calls. */
export function nativeMeans() {
  return Object.fromEntries([...nativeTime].map(([k, e]) => [k, { us: +((e.ms * 1e3) / e.calls).toFixed(1), calls: e.calls }]));
}
