/**
 * Where to look for shared libraries that the addon loads at run time (NCCL
 * now, cuBLAS later). The policy lives here; the addon only dlopen()s the list.
 */
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';

export interface RuntimeLibrarySpec {
  /** Shared object name the system loader knows, e.g. libnccl.so.2. */
  soname: string;
  /** Variable naming the exact file (or its folder): the manual override. */
  overrideVar: string;
  /** Variable naming an install root whose lib/ or lib64/ holds the library. */
  homeVar?: string;
  /** Folders under a Python site-packages where NVIDIA's wheels put it. */
  wheelDirs: string[];
}

export interface LibraryCandidate {
  /** What dlopen() is given: an absolute path, or the bare soname for the system search path. */
  path: string;
  /** Which rule produced it. */
  source: 'override' | 'home' | 'system' | 'python-wheel';
}

export const NCCL_LIBRARY: RuntimeLibrarySpec = {
  soname: 'libnccl.so.2',
  overrideVar: 'WIDEEP_NCCL_LIBRARY',
  homeVar: 'NCCL_HOME',
  wheelDirs: ['nvidia/nccl/lib'],
};

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Install prefixes of every python3 on PATH (both the venv's and the interpreter's real one). */
export function pythonPrefixes(pathVar = process.env.PATH ?? ''): string[] {
  const prefixes: string[] = [];
  for (const dir of pathVar.split(delimiter)) {
    if (!dir) continue;
    for (const name of safeReaddir(dir)) {
      if (!/^python3(\.\d+)?$/.test(name)) continue;
      const exe = join(dir, name);
      prefixes.push(dirname(dir));
      try {
        prefixes.push(dirname(dirname(realpathSync(exe))));
      } catch {
        // a dangling link names no interpreter
      }
    }
  }
  return [...new Set(prefixes)];
}

/** site-packages / dist-packages folders under the given Python prefixes. */
export function sitePackages(prefixes: string[]): string[] {
  const out: string[] = [];
  for (const prefix of prefixes) {
    for (const lib of ['lib', 'lib64', 'local/lib']) {
      for (const py of safeReaddir(join(prefix, lib))) {
        if (!/^python3(\.\d+)?$/.test(py)) continue;
        for (const sp of ['site-packages', 'dist-packages']) {
          const p = join(prefix, lib, py, sp);
          if (existsSync(p)) out.push(p);
        }
      }
    }
  }
  return [...new Set(out)];
}

/** The candidates in the order they are tried: override, home, system path, Python wheels. */
export function libraryCandidates(spec: RuntimeLibrarySpec, env: NodeJS.ProcessEnv = process.env): LibraryCandidate[] {
  const out: LibraryCandidate[] = [];
  const override = env[spec.overrideVar];
  if (override) {
    out.push({ path: isFile(override) ? override : join(override, spec.soname), source: 'override' });
  }
  const home = spec.homeVar ? env[spec.homeVar] : undefined;
  if (home) {
    for (const lib of ['lib', 'lib64']) {
      const p = join(home, lib, spec.soname);
      if (isFile(p)) out.push({ path: p, source: 'home' });
    }
  }
  out.push({ path: spec.soname, source: 'system' });
  for (const sp of sitePackages(pythonPrefixes(env.PATH ?? ''))) {
    for (const w of spec.wheelDirs) {
      const p = join(sp, w, spec.soname);
      if (isFile(p)) out.push({ path: p, source: 'python-wheel' });
    }
  }
  const seen = new Set<string>();
  return out.filter((c) => (seen.has(c.path) ? false : (seen.add(c.path), true)));
}

/** What the addon's loader answers for a list of candidates. */
export interface NativeLibraryLoad {
  loaded: boolean;
  path?: string;
  version?: number;
  attempts: { path: string; error: string }[];
}

export interface LibraryLoadOutcome {
  loaded: boolean;
  path?: string;
  version?: number;
  /** Every candidate in order, with the error that ruled it out. */
  tried: (LibraryCandidate & { error?: string })[];
}

/** Tries the spec's candidates through `load` (the addon's dlopen), recording why each one failed. */
export function loadRuntimeLibrary(spec: RuntimeLibrarySpec, load: (paths: string[]) => NativeLibraryLoad): LibraryLoadOutcome {
  const candidates = libraryCandidates(spec);
  const r = load(candidates.map((c) => c.path));
  const tried = candidates.map((c) => ({ ...c, error: r.attempts.find((a) => a.path === c.path)?.error }));
  return { loaded: r.loaded, path: r.path, version: r.version, tried };
}

/** One line per candidate tried, for error messages. */
export function describeTried(tried: LibraryLoadOutcome['tried']): string {
  return tried.map((c) => `  ${c.path} (${c.source}): ${c.error ?? 'not tried'}`).join('\n');
}
