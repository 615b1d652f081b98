// Fixture processes, for tests that need a whole Node process around a
// heap. startFixture: one that prints one JSON event per line on stdout:
// start it, wait (bounded) for an event by name, kill it (the failure-model
// tests). runNodeFixture: one run to its end, its output and exit code.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { withTimeout } from './common.js';

export interface Fixture {
  proc: ChildProcess;
  events: Record<string, unknown>[];
  stderr: () => string;
  /** Resolves with the first event named `name` (bounded). */
  next(name: string, ms?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(): void;
}

export interface FixtureSpawn {
  /** Its own process group (kill() then kills the group). */
  detached?: boolean;
  /** Argv before `node FILE OPTS` (a shell that enters a cgroup, prlimit...). */
  prefix?: string[];
  /** A pipe to its stdin (default: none). */
  stdin?: boolean;
}

/** Runs `node file JSON.stringify(opts)`. */
export function startFixture(file: string, opts: object, o: FixtureSpawn = {}): Fixture {
  const argv = [...(o.prefix ?? []), process.execPath, file, JSON.stringify(opts)];
  const proc = spawn(argv[0], argv.slice(1), {
    stdio: [o.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'], detached: o.detached ?? false, cwd: '/',
  });
  const events: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let buf = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim()) events.push(JSON.parse(line));
      for (const w of waiters.splice(0)) w();
    }
  });
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  return {
    proc, events, exited,
    stderr: () => err,
    next(name: string, ms = 15_000): Promise<Record<string, unknown>> {
      const find = (): Record<string, unknown> | undefined => events.find((e) => e.event === name);
      return withTimeout(new Promise((resolve, reject) => {
        const look = (): void => {
          const e = find();
          if (e) return resolve(e);
          if (proc.exitCode !== null || proc.signalCode !== null) return reject(new Error(`fixture exited before '${name}': ${err}`));
          waiters.push(look);
        };
        proc.on('exit', () => setTimeout(look, 50));
        look();
      }), ms, `fixture event '${name}' (stderr: ${err})`);
    },
    kill(): void {
      if (proc.exitCode === null && proc.signalCode === null) {
        try { process.kill(o.detached ? -proc.pid! : proc.pid!, 'SIGKILL'); } catch { /* gone */ }
      }
    },
  };
}

/**
 * Runs `node file ...args` to its end (killed after `timeoutMs`) and gives
 * its exit code (-1 when killed or not started), stdout and stderr.
 */
export function runNodeFixture(file: string, args: string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [file, ...args], { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      resolve({ code: child.exitCode ?? (err ? -1 : 0), stdout, stderr });
    });
  });
}
