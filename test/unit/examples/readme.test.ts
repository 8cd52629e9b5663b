/**
 * README.md's code is real: every ```js/```ts block follows a line
 * `<!-- excerpt: examples/FILE -->` and its lines appear, in order, in that
 * file (which the examples' test runs on GPUs); every ```sh block's commands
 * name npm scripts, wideep commands and files that exist.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const read = (p: string) => readFileSync(join(root, p), 'utf8');

interface Block {
  lang: string;
  /** The line before the fence. */
  before: string;
  lines: string[];
  at: number;
}

function codeBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const end = lines.indexOf('```', i + 1);
    blocks.push({ lang: open[1]!, before: lines[i - 1] ?? '', lines: lines.slice(i + 1, end), at: i + 1 });
    i = end;
  }
  return blocks;
}

/** The block's lines missing from `file` in order (each matched after the previous one), trimmed. */
function missingFromExcerpt(block: readonly string[], file: string): string[] {
  const source = file.split('\n').map((l) => l.trim());
  const missing: string[] = [];
  let from = 0;
  for (const line of block.map((l) => l.trim()).filter((l) => l !== '')) {
    const at = source.indexOf(line, from);
    if (at < 0) missing.push(line);
    else from = at + 1;
  }
  return missing;
}

const readme = read('README.md');
const blocks = codeBlocks(readme);
const pkg = JSON.parse(read('package.json')) as { name: string; scripts: Record<string, string> };
const commands = [...read('src/cli/main.ts').matchAll(/^ {2}'?([\w ]+)'?: \{/gm)].map((m) => m[1]!);

describe('README.md', () => {
  it('has code blocks of both kinds', () => {
    expect(blocks.filter((b) => b.lang === 'js').length).toBeGreaterThanOrEqual(3);
    expect(blocks.filter((b) => b.lang === 'sh').length).toBeGreaterThanOrEqual(2);
    expect(commands).toContain('demo');
  });

  for (const b of blocks.filter((x) => x.lang !== 'sh')) {
    it(`the ${b.lang} block at line ${b.at} is an excerpt of the example it names`, () => {
      const file = /^<!-- excerpt: (examples\/[\w.-]+) -->$/.exec(b.before)?.[1];
      expect(file, `line ${b.at - 1} should be <!-- excerpt: examples/FILE -->`).toBeDefined();
      expect(existsSync(join(root, file!)), file).toBe(true);
      expect(missingFromExcerpt(b.lines, read(file!)), `lines of README.md:${b.at} not found in order in ${file}`).toEqual([]);
    });
  }

  for (const b of blocks.filter((x) => x.lang === 'sh')) {
    it(`the commands of the sh block at line ${b.at} exist`, () => {
      for (const line of b.lines) {
        for (const cmd of line.replace(/#.*/, '').split('&&').map((c) => c.trim().split(/\s+/))) {
          if (cmd[0] === 'npm' && cmd[1] === 'run') expect(pkg.scripts, line).toHaveProperty(cmd[2]!);
          else if (cmd[0] === 'npm') expect(['install', 'test'], line).toContain(cmd[1]);
          else if (cmd[0] === 'npx') expect([cmd[1], commands.includes(cmd[2]!)], line).toEqual([pkg.name, true]);
          else throw new Error(`README.md:${b.at}: unexpected command: ${line}`);
          for (const path of cmd.filter((w) => w.startsWith('examples/'))) expect(existsSync(join(root, path)), path).toBe(true);
        }
      }
    });
  }
});

describe('the excerpt check', () => {
  it('fails a line that is not in the file, or is out of order', () => {
    const file = 'const a = 1;\nconst b = 2;\n';
    expect(missingFromExcerpt(['const a = 1;', '  const b = 2;'], file)).toEqual([]);
    expect(missingFromExcerpt(['const c = 3;'], file)).toEqual(['const c = 3;']);
    expect(missingFromExcerpt(['const b = 2;', 'const a = 1;'], file)).toEqual(['const a = 1;']);
  });
});
