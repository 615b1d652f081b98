/**
 * Executable documentation: finds the fenced blocks of a Markdown file, reads
 * the `<!-- doctest: ... -->` comment above each, runs the ones it says to run
 * and checks their output against the claims written there. test/docs.test.ts
 * applies it to README.md and docs/*.md; docs/contributing.md ("Commands in the
 * docs are tests") is the reader's side of the convention.
 *
 * The directive is an HTML comment on the line(s) right above the fence (a
 * blank line between them is allowed); Markdown renderers do not show it:
 *
 *   <!-- doctest: expect /fork took [\d,]+ µs/; reject /aborted/; timeout 40s -->
 *   ```sh
 *   node dist/tools/cli.js demo --records 20000
 *   ```
 *
 *   clause              meaning
 *   ------------------  ------------------------------------------------------
 *   expect /re/flags    stdout+stderr must match (any number of them)
 *   reject /re/flags    stdout+stderr must not match
 *   exit N              the exit status (default 0)
 *   timeout Ns          kill the block's whole process group after N s (default 30)
 *   skip REASON         not run; the reason (the rest of the directive) is required
 *
 * What runs: `sh`/`bash` blocks with bash (`set -eo pipefail`: every line must
 * succeed); `ts`/`js`/`mjs` blocks as an ES module (TypeScript transpiled,
 * not type-checked) whose `import ... from 'forkgc'` resolves to this
 * repository as an installed package would. Every `sh`/`bash` block must carry
 * a directive (an unmarked one is an error: a command nobody checks is how
 * docs go stale); `ts`/`js` blocks are API fragments unless marked.
 *
 * Inline commands `npx vitest run FILE -t "NAME"` (docs/failure-model.md's
 * "run it" column) are checked without running them: FILE must exist and NAME,
 * a regular expression as vitest's -t reads it, must name a test in FILE.
 */
import { spawn } from 'node:child_process';

export type Lang = 'sh' | 'js' | 'ts';

export interface Directive {
  skip?: string;
  expect: RegExp[];
  reject: RegExp[];
  exit: number;
  timeoutMs: number;
}

export interface DocBlock {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The fence's info string, as written ("sh", "ts", "", ...). */
  info: string;
  /** What the harness runs it as, or null (plain text, a diagram, JSON, ...). */
  lang: Lang | null;
  code: string;
  directive: Directive | null;
  /** The directive's own text, for messages. */
  directiveText: string | null;
}

export interface VitestCommand {
  file: string;
  line: number;
  testFile: string;
  pattern: string;
}

export class DirectiveError extends Error {}

const DEFAULT_TIMEOUT_MS = 30_000;

function langOf(info: string): Lang | null {
  const word = info.trim().split(/\s+/)[0]?.toLowerCase() ?? '';
  if (word === 'sh' || word === 'bash' || word === 'shell') return 'sh';
  if (word === 'ts' || word === 'typescript') return 'ts';
  if (word === 'js' || word === 'mjs' || word === 'javascript') return 'js';
  return null;
}

/** Parses the inside of `<!-- doctest: ... -->`. Throws DirectiveError on anything it does not know. */
export function parseDirective(text: string): Directive {
  const d: Directive = { expect: [], reject: [], exit: 0, timeoutMs: DEFAULT_TIMEOUT_MS };
  let i = 0;
  const s = text.trim();
  const ws = () => { while (i < s.length && /\s/.test(s[i])) i++; };
  const regex = (): RegExp => {
    ws();
    if (s[i] !== '/') throw new DirectiveError(`expected /regex/ at "${s.slice(i)}"`);
    let j = i + 1;
    let inClass = false;
    for (; j < s.length; j++) {
      if (s[j] === '\\') { j++; continue; }
      if (s[j] === '[') inClass = true;
      else if (s[j] === ']') inClass = false;
      else if (s[j] === '/' && !inClass) break;
    }
    if (j >= s.length) throw new DirectiveError(`unterminated /regex/ in "${s}"`);
    const body = s.slice(i + 1, j);
    let k = j + 1;
    while (k < s.length && /[a-z]/.test(s[k])) k++;
    const flags = s.slice(j + 1, k);
    i = k;
    try {
      return new RegExp(body, flags);
    } catch (e) {
      throw new DirectiveError(`bad regex /${body}/${flags}: ${(e as Error).message}`);
    }
  };
  while (true) {
    ws();
    if (i >= s.length) break;
    const word = /^[a-z-]+/.exec(s.slice(i))?.[0];
    if (!word) throw new DirectiveError(`expected a clause at "${s.slice(i)}"`);
    i += word.length;
    if (word === 'expect') d.expect.push(regex());
    else if (word === 'reject') d.reject.push(regex());
    else if (word === 'exit' || word === 'timeout') {
      ws();
      const m = (word === 'exit' ? /^\d+/ : /^(\d+(?:\.\d+)?)s\b/).exec(s.slice(i));
      if (!m) throw new DirectiveError(`${word} needs ${word === 'exit' ? 'a status' : 'seconds, as "40s"'} at "${s.slice(i)}"`);
      i += m[0].length;
      if (word === 'exit') d.exit = Number(m[0]);
      else d.timeoutMs = Number(m[1]) * 1000;
    } else if (word === 'skip') {
      // The reason is the rest of the directive (it may hold any punctuation).
      const reason = s.slice(i).trim();
      if (reason.length < 8) throw new DirectiveError('skip needs a reason (why this block is not run)');
      d.skip = reason;
      i = s.length;
    } else {
      throw new DirectiveError(`unknown clause "${word}" (expect, reject, exit, timeout, skip)`);
    }
    ws();
    if (i < s.length) {
      if (s[i] !== ';') throw new DirectiveError(`expected ";" between clauses at "${s.slice(i)}"`);
      i++;
    }
  }
  if (!d.skip && d.expect.length === 0 && d.reject.length === 0) {
    throw new DirectiveError('a block that runs must state a claim: expect /.../ or reject /.../');
  }
  return d;
}

/** The fenced blocks of a Markdown text with their directives. Throws DirectiveError for a malformed directive. */
export function extractBlocks(markdown: string, file: string): DocBlock[] {
  const lines = markdown.split('\n');
  const blocks: DocBlock[] = [];
  let pending: { text: string; line: number } | null = null;
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n];
    const comment = /^\s*<!--\s*doctest:([\s\S]*?)-->\s*$/.exec(line);
    if (comment) {
      pending = { text: comment[1], line: n + 1 };
      continue;
    }
    if (/^\s*<!--\s*doctest/.test(line)) throw new DirectiveError(`${file}:${n + 1}: a doctest directive must fit on one line and end with -->`);
    const fence = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(line);
    if (!fence) {
      if (pending && line.trim() !== '') {
        throw new DirectiveError(`${file}:${pending.line}: the doctest directive is not followed by a fenced block`);
      }
      continue;
    }
    const [, indent, marker, info] = fence;
    const body: string[] = [];
    let m = n + 1;
    for (; m < lines.length; m++) {
      const close = new RegExp(`^\\s*${marker[0] === '`' ? '`' : '~'}{${marker.length},}\\s*$`);
      if (close.test(lines[m])) break;
      body.push(lines[m].startsWith(indent) ? lines[m].slice(indent.length) : lines[m]);
    }
    let directive: Directive | null = null;
    if (pending) {
      try {
        directive = parseDirective(pending.text);
      } catch (e) {
        throw new DirectiveError(`${file}:${pending.line}: ${(e as Error).message}`);
      }
    }
    blocks.push({
      file, line: n + 1, info: info.trim(), lang: langOf(info), code: body.join('\n'),
      directive, directiveText: pending ? pending.text.trim() : null,
    });
    pending = null;
    n = m;
  }
  if (pending) throw new DirectiveError(`${file}:${pending.line}: the doctest directive is not followed by a fenced block`);
  return blocks;
}

/** Blocks that must carry a directive and do not: every sh/bash block. */
export function unmarkedShellBlocks(blocks: DocBlock[]): DocBlock[] {
  return blocks.filter((b) => b.lang === 'sh' && !b.directive);
}

/** Inline `npx vitest run FILE -t "NAME"` commands (in backticks, FILE a *.test.ts) of a Markdown text. */
export function extractVitestCommands(markdown: string, file: string): VitestCommand[] {
  const out: VitestCommand[] = [];
  markdown.split('\n').forEach((line, n) => {
    for (const m of line.matchAll(/`npx vitest run (\S+\.test\.ts) -t "([^"`]+)"`/g)) {
      out.push({ file, line: n + 1, testFile: m[1], pattern: m[2] });
    }
  });
  return out;
}

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  timedOut: boolean;
  ms: number;
}

/** What is wrong with a run, judged by its block's directive: an empty list when the claim held. */
export function judge(d: Directive, r: RunResult): string[] {
  const problems: string[] = [];
  if (r.timedOut) problems.push(`timed out after ${d.timeoutMs / 1000} s (its process group was killed)`);
  else if (r.status !== d.exit) problems.push(`exited ${r.signal ? `by ${r.signal}` : r.status}, expected ${d.exit}`);
  for (const re of d.expect) if (!re.test(r.output)) problems.push(`output does not match ${re}`);
  for (const re of d.reject) if (re.test(r.output)) problems.push(`output matches ${re}, which it must not`);
  return problems;
}

/**
 * Runs `file` with `args` in its own process group, and on timeout kills the
 * whole group (a block may start background processes); the group is killed
 * after a normal exit too, so nothing a block started outlives it.
 */
export function runBounded(file: string, args: string[], opts: { cwd: string; timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<RunResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(file, args, { cwd: opts.cwd, env: opts.env ?? process.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => { output += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { output += b.toString(); });
    let timedOut = false;
    const killGroup = () => {
      try { if (child.pid) process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    };
    const timer = setTimeout(() => { timedOut = true; killGroup(); }, opts.timeoutMs);
    child.on('error', (e) => { output += `\n(spawn failed: ${e.message})`; });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      killGroup();
      resolve({ status, signal, output, timedOut, ms: performance.now() - t0 });
    });
  });
}
