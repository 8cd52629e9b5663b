/**
 * The tarball holds every file the runtime opens. `npm pack --dry-run` lists
 * what npm would ship (scripts off, so nothing is built); the checks read the
 * working tree for what the code opens, imports or builds from. The published
 * dist/ carries no source maps (src/ is not shipped for them to point at).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  main: string;
  types: string;
  bin: Record<string, string>;
  exports: unknown;
  files: string[];
  scripts: Record<string, string>;
};

/** Paths (posix, relative to `dir`) that `npm pack` would put in the tarball. */
function packList(dir: string): Set<string> {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir, encoding: 'utf8' });
  const [report] = JSON.parse(out) as { files: { path: string }[] }[];
  return new Set(report!.files.map((f) => f.path));
}

function walk(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(posix.join(dir, e.name)) : [posix.join(dir, e.name)],
  );
}

const norm = (p: string) => posix.normalize(p.replace(/^\.\//, ''));
const read = (p: string) => readFileSync(join(root, p), 'utf8');

/** `files` plus every module they import by relative path, transitively. */
function importClosure(entries: string[]): string[] {
  const seen = new Set<string>();
  const todo = entries.map(norm);
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const m of read(file).matchAll(/(?:\bfrom|\bimport)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
      todo.push(posix.join(posix.dirname(file), m[1]!));
    }
  }
  return [...seen];
}

function leaves(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  return v && typeof v === 'object' ? Object.values(v).flatMap(leaves) : [];
}

let shipped: Set<string>;
const missing = (paths: string[]) => paths.filter((p) => !shipped.has(p)).sort();

beforeAll(() => {
  shipped = packList(root);
}, 60_000);

describe('the npm tarball', () => {
  it('has dist/ built to check against', () => {
    expect(existsSync(join(root, 'dist', 'index.js')), 'build it first: npm run build:ts').toBe(true);
  });

  it('ships the entry points: bin, main, types and every export target', () => {
    const entries = [pkg.main, pkg.types, ...Object.values(pkg.bin), ...leaves(pkg.exports)].map(norm);
    expect(missing(entries)).toEqual([]);
  });

  it('ships every module the CLI and the exports import, transitively', () => {
    const js = [...Object.values(pkg.bin), ...leaves(pkg.exports)].filter((p) => p.endsWith('.js'));
    const closure = importClosure(js);
    expect(closure.length).toBeGreaterThan(20);
    expect(missing(closure)).toEqual([]);
  });

  it('ships every file the code opens by path (workers, helper scripts)', () => {
    const opened: string[] = [];
    for (const file of walk('src').filter((p) => p.endsWith('.ts'))) {
      const text = read(file);
      // join(PACKAGE_ROOT, 'scripts', 'bench', 'x.py'): a path from the package root.
      for (const m of text.matchAll(/join\(PACKAGE_ROOT((?:,\s*'[^']*')+)\)/g)) {
        opened.push(posix.join(...[...m[1]!.matchAll(/'([^']*)'/g)].map((p) => p[1]!)));
      }
      // new URL('./x.js', import.meta.url) or join(dirname(fileURLToPath(import.meta.url)), 'x.js'):
      // a file beside the compiled module in dist/.
      const besides = [
        ...text.matchAll(/new URL\('(\.{1,2}\/[^']+)', import\.meta\.url\)/g),
        ...text.matchAll(/join\(dirname\(fileURLToPath\(import\.meta\.url\)\),\s*'([^']+)'\)/g),
      ];
      const distDir = posix.dirname(file).replace(/^src/, 'dist');
      for (const m of besides) opened.push(posix.join(distDir, m[1]!));
    }
    expect(opened).toContain('scripts/bench/torch_nccl.py');
    // build/ is made by the install on the user's machine, never shipped.
    expect(missing(opened.filter((p) => !p.startsWith('build/')))).toEqual([]);
  });

  it('ships what a source build runs: the install script, the scripts binding.gyp calls, every native source', () => {
    const install = /^node (\S+)$/.exec(pkg.scripts.install!)?.[1];
    expect(install).toBeDefined();
    // `<!(node x.mjs)` at configure time, or ["node", "x.mjs", ...] as an action.
    const gypScripts = [...read('binding.gyp').matchAll(/\bnode(?:\s+|",\s*")([\w/.-]+\.mjs)/g)].map((m) => m[1]!);
    expect(gypScripts).toEqual(expect.arrayContaining(['scripts/find-cuda.mjs', 'cmake/build-kernels.mjs']));
    const needed = [...importClosure([install!, ...gypScripts]), 'binding.gyp', 'CMakeLists.txt', ...walk('native')];
    expect(missing(needed)).toEqual([]);
  });

  it('ships LICENSE and README.md', () => {
    expect(missing(['LICENSE', 'README.md'])).toEqual([]);
  });

  it('ships no source map that points at an unshipped file', () => {
    const dangling: string[] = [];
    for (const map of [...shipped].filter((p) => p.endsWith('.map'))) {
      const { sources, sourceRoot = '' } = JSON.parse(read(map)) as { sources: string[]; sourceRoot?: string };
      for (const s of sources) {
        const target = posix.join(posix.dirname(map), sourceRoot, s);
        if (!shipped.has(target)) dangling.push(`${map} -> ${target}`);
      }
    }
    expect(dangling).toEqual([]);
  });

  it('builds the published dist/ without source maps (npm pack runs prepare after prepack)', () => {
    expect(pkg.scripts.prepare).toBe('npm run build:ts');
    expect(pkg.scripts['build:ts']).toBe('tsc -p tsconfig.build.json');
    expect((JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { sourceMap?: boolean } }).compilerOptions.sourceMap).toBe(false);
    expect(pkg.scripts.prepack).toMatch(/rmSync\('dist'/);
  });

  it('ships nothing made for development only', () => {
    const dev = [...shipped].filter((p) => /^(test|bench|build|\.ci|scripts\/(gpu|dev))\//.test(p) || p === 'scripts/prebuild.mjs');
    expect(dev).toEqual([]);
  });
});

describe('the package.json files list', () => {
  // prebuilds/ exists only after `npm pack` has built it, and neither build/
  // nor a source map left in dist/ by a development build may ship: try npm's
  // own matching on a stand-in tree.
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'wideep-files-'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'wideep', version: '0.0.0', files: pkg.files }));
    for (const f of ['prebuilds/linux-x64/wideep.glibc.glibc2_34.node', 'build/Release/wideep.node', 'dist/index.js', 'dist/index.js.map']) {
      mkdirSync(dirname(join(dir, f)), { recursive: true });
      writeFileSync(join(dir, f), '');
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('ships the prebuilt addon where node-gyp-build looks, and no local build or source map', () => {
    const list = packList(dir);
    expect(list.has('prebuilds/linux-x64/wideep.glibc.glibc2_34.node')).toBe(true);
    expect(list.has('dist/index.js')).toBe(true);
    expect(list.has('build/Release/wideep.node')).toBe(false);
    expect(list.has('dist/index.js.map')).toBe(false);
  });
});
