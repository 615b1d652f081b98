/**
 * The documentation's commands are tests (issue 15): every fenced `sh` block
 * in README.md and docs/*.md carries a `<!-- doctest: ... -->` directive and
 * is either run here, its output checked against the claim written in the
 * directive, or skipped with a reason; marked `ts`/`js` blocks (the README's
 * example) run as modules importing 'forkgc'; every `npx vitest run FILE -t
 * "NAME"` in the docs names a test that exists. The convention is in
 * test/helpers/doctest.ts and docs/contributing.md.
 *
 * The blocks run against the built dist/ (`npm test` builds first), in a
 * scratch directory that links dist/, node_modules/ and package.json, so the
 * files the CLI writes (trace.json, forkgc-cow-map.html) never land in the
 * repository. Each block runs in its own process group with a timeout; the
 * docs keep their sizes small so the whole file takes about a minute.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DirectiveError, extractBlocks, extractVitestCommands, judge, parseDirective, runBounded, unmarkedShellBlocks,
  type DocBlock, type RunResult,
} from './helpers/doctest.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const docFiles = ['README.md', ...readdirSync(path.join(repo, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const docs = docFiles.map((file) => ({ file, text: readFileSync(path.join(repo, file), 'utf8') }));

let scratch = '';
beforeAll(() => {
  scratch = mkdtempSync(path.join(tmpdir(), 'forkgc-doctest-'));
  for (const f of ['dist', 'node_modules', 'package.json']) symlinkSync(path.join(repo, f), path.join(scratch, f));
  // `import ... from 'forkgc'` in a snippet resolves to this repository, through its package.json "exports".
  mkdirSync(path.join(scratch, 'snippets', 'node_modules'), { recursive: true });
  symlinkSync(repo, path.join(scratch, 'snippets', 'node_modules', 'forkgc'));
  writeFileSync(path.join(scratch, 'snippets', 'package.json'), '{ "type": "module", "private": true }\n');
});
afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** Runs a block: sh with bash, ts/js as an ES module (TypeScript transpiled only). */
async function runBlock(b: DocBlock, timeoutMs: number): Promise<RunResult> {
  if (b.lang === 'sh') {
    return runBounded('bash', ['-c', `set -eo pipefail\n${b.code}\n`], { cwd: scratch, timeoutMs });
  }
  const js = b.lang === 'ts'
    ? ts.transpileModule(b.code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText
    : b.code;
  const file = path.join(scratch, 'snippets', `${path.basename(b.file, '.md')}-${b.line}.mjs`);
  writeFileSync(file, js);
  return runBounded(process.execPath, [file], { cwd: path.join(scratch, 'snippets'), timeoutMs });
}

describe('the doctest harness itself', () => {
  const sample = [
    'Text.',
    '<!-- doctest: expect /hello w\\w+/; reject /error/i; timeout 5s -->',
    '```sh',
    'echo "hello world"',
    '```',
    '',
    '<!-- doctest: skip needs a network connection -->',
    '',
    '```sh',
    'npm install forkgc',
    '```',
    '```ts',
    'const x: number = 1;',
    '```',
    '```sh',
    'echo unmarked',
    '```',
    'Run `npx vitest run test/a.test.ts -t "some name"` for it.',
  ].join('\n');

  it('extracts blocks, their directives and the inline vitest commands', () => {
    const blocks = extractBlocks(sample, 'x.md');
    expect(blocks.map((b) => [b.line, b.lang, b.code])).toEqual([
      [3, 'sh', 'echo "hello world"'], [9, 'sh', 'npm install forkgc'], [12, 'ts', 'const x: number = 1;'], [15, 'sh', 'echo unmarked'],
    ]);
    expect(blocks[0].directive).toMatchObject({ expect: [/hello w\w+/], reject: [/error/i], exit: 0, timeoutMs: 5000 });
    expect(blocks[1].directive?.skip).toBe('needs a network connection');
    expect(unmarkedShellBlocks(blocks).map((b) => b.line)).toEqual([15]);
    expect(extractVitestCommands(sample, 'x.md')).toEqual([{ file: 'x.md', line: 18, testFile: 'test/a.test.ts', pattern: 'some name' }]);
  });

  it('refuses malformed directives: no claim, unknown clause, bad regex, no reason to skip, no block after it', () => {
    expect(() => parseDirective('timeout 5s')).toThrow(DirectiveError);
    expect(() => parseDirective('expect /a/; frobnicate')).toThrow(/unknown clause/);
    expect(() => parseDirective('expect /a(/')).toThrow(/bad regex/);
    expect(() => parseDirective('expect /a')).toThrow(/unterminated/);
    expect(() => parseDirective('skip')).toThrow(/reason/);
    expect(() => extractBlocks('<!-- doctest: expect /a/ -->\nsome text\n', 'y.md')).toThrow(/not followed by a fenced block/);
    expect(parseDirective('expect /a[/]b/').expect[0].source).toBe('a[/]b');
  });

  it('fails a block whose output contradicts its claim (a wrong sentence fails CI)', async () => {
    const [block] = extractBlocks([
      '<!-- doctest: expect /the parent copied 0 pages/; timeout 10s -->',
      '```sh',
      'echo "the parent copied 2 pages (8 KiB)"',
      '```',
    ].join('\n'), 'wrong.md');
    const r = await runBlock(block, block.directive!.timeoutMs);
    expect(r.status).toBe(0);
    expect(judge(block.directive!, r)).toEqual(['output does not match /the parent copied 0 pages/']);
    // The same block with the true claim passes.
    expect(judge(parseDirective('expect /the parent copied 2 pages/'), r)).toEqual([]);
  });

  it('fails on a non-zero exit, a rejected match and a timeout (whose background processes are killed too)', async () => {
    const failing = await runBlock({ ...extractBlocks('<!-- doctest: expect /x/ -->\n```sh\necho x; false\necho after\n```', 'f.md')[0] }, 10_000);
    expect(judge(parseDirective('expect /x/'), failing)).toEqual(['exited 1, expected 0']);
    expect(judge(parseDirective('reject /x/'), failing)).toContain('output matches /x/, which it must not');
    const pidFile = path.join(scratch, 'bg.pid');
    const hung = await runBounded('bash', ['-c', `sleep 30 & echo $! > ${pidFile}; wait`], { cwd: scratch, timeoutMs: 1000 });
    expect(hung.timedOut).toBe(true);
    expect(judge(parseDirective('expect /./; timeout 1s'), hung)[0]).toMatch(/timed out after 1 s/);
    const bg = Number(readFileSync(pidFile, 'utf8'));
    const deadline = Date.now() + 5000;
    let alive = true;
    while (alive && Date.now() < deadline) {
      try { process.kill(bg, 0); alive = !/^State:\s+Z/m.test(readFileSync(`/proc/${bg}/status`, 'utf8')); } catch { alive = false; }
      if (alive) await new Promise((r) => setTimeout(r, 50));
    }
    expect(alive).toBe(false);
  });
});

describe('every command in the docs is marked', () => {
  it.each(docs.map((d) => [d.file, d.text]))('%s: every sh block carries a doctest directive', (file, text) => {
    const unmarked = unmarkedShellBlocks(extractBlocks(text, file)).map((b) => `${b.file}:${b.line}`);
    expect(unmarked, 'add <!-- doctest: expect /.../ --> (or skip REASON) above each').toEqual([]);
  });
});

const runnable = docs.flatMap((d) => extractBlocks(d.text, d.file)).filter((b) => b.directive && !b.directive.skip && b.lang);

describe('the docs\' commands do what the docs say', () => {
  it.each(runnable.map((b) => [`${b.file}:${b.line}`, b] as const))('%s', async (_where, b) => {
    const d = b.directive!;
    const r = await runBlock(b, d.timeoutMs);
    const problems = judge(d, r);
    expect(problems, `${b.file}:${b.line} (${d.expect.concat(d.reject).join(' ')}):\n${b.code}\n--- output (${r.ms.toFixed(0)} ms) ---\n${r.output}`).toEqual([]);
  }, 120_000);
});

describe('the docs\' test commands name tests that exist', () => {
  const commands = docs.flatMap((d) => extractVitestCommands(d.text, d.file));
  it('docs/failure-model.md: every row of a table with a "run it" column has a command there, or says why not', () => {
    const text = docs.find((d) => d.file === 'docs/failure-model.md')!.text;
    let inTable = false;
    const rows: string[] = [];
    const bad: string[] = [];
    text.split('\n').forEach((line, n) => {
      if (!line.startsWith('|')) { inTable = false; return; }
      if (/\| run it \|$/.test(line)) { inTable = true; return; }
      if (!inTable || /^\|[-|]+\|$/.test(line)) return;
      rows.push(line);
      const last = line.split(' | ').at(-1) ?? '';
      if (!/`npx vitest run \S+ -t "[^"]+"`/.test(last) && !/^(no test|none can provoke)/.test(last)) bad.push(`docs/failure-model.md:${n + 1}`);
    });
    expect(rows.length).toBeGreaterThanOrEqual(30);
    expect(bad).toEqual([]);
  });
  it('each `npx vitest run FILE -t "NAME"` matches at least one test of FILE', async () => {
    const files = [...new Set(commands.map((c) => c.testFile))];
    for (const f of files) expect(existsSync(path.join(repo, f)), f).toBe(true);
    // `vitest list` collects the tests (imports the files, runs none).
    const listFile = path.join(scratch, 'tests.json');
    const r = await runBounded(process.execPath, [path.join(repo, 'node_modules', 'vitest', 'vitest.mjs'), 'list', `--json=${listFile}`, ...files],
      { cwd: repo, timeoutMs: 90_000 });
    expect(r.timedOut || r.status !== 0 ? r.output : '').toBe('');
    const tests = JSON.parse(readFileSync(listFile, 'utf8')) as { name: string; file: string }[];
    const missing = commands.filter((c) => {
      const re = new RegExp(c.pattern);
      return !tests.some((t) => path.relative(repo, t.file) === c.testFile && re.test(t.name));
    }).map((c) => `${c.file}:${c.line}: ${c.testFile} -t "${c.pattern}"`);
    expect(missing).toEqual([]);
  }, 120_000);
});

