// The npm package as a user gets it: `npm pack` (which builds the prebuilt
// addon into prebuilds/), then an install of the tarball into a fresh app on a
// PATH with no C/C++ compiler, no make and no python (so the install can only
// succeed on the prebuilt binary), offline (the app gets a lockfile made from
// ours, so every dependency comes from the npm cache `npm ci` filled). In that
// app: import (ESM) and require (CJS) of forkgc with a real fork cycle,
// require('forkgc/package.json'), the CLI's --version, TypeScript with
// moduleResolution node10 and no skipLibCheck. Then the same install where no
// prebuild matches (a musl libc): it fails with the message that says what to
// install. publint and arethetypeswrong lint the tarball.
//
// Nothing here touches the repository's own build/ or dist/: the package is
// packed from a copy, in a temporary directory.
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import {
  cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const manifest = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as {
  name: string; version: string; files: string[]; bin: Record<string, string>; engines: Record<string, string>;
};
const lock = JSON.parse(readFileSync(path.join(repo, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { version?: string; dev?: boolean; [k: string]: unknown }>;
};

// The staged copy gets its own version, so that a version printed from
// anything but the installed package.json (a hard-coded one) shows.
const version = `${manifest.version}-packtest`;

let work = '';
let tarball = '';
/** A directory holding only node, npm and sh: no cc, c++, g++, make, python3. */
let bareBin = '';
let npmCli = '';

/** The environment without the npm_* variables of the `npm test` running us (but its cache). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_/i.test(k) || /^npm_config_cache$/i.test(k)) env[k] = v;
  }
  return { ...env, ...extra };
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 2 ** 20 });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}\n${r.stdout}\n${r.stderr}`);
  return r;
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.status !== 0) throw new Error(`${what} exited ${r.status} (${r.signal ?? 'no signal'}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** An app whose lockfile pins forkgc (the tarball) and its dependencies as our own lockfile does. */
function makeApp(name: string, extraDev: string[]): string {
  const app = path.join(work, name);
  mkdirSync(app);
  const rel = `file:../${path.basename(tarball)}`;
  const root = lock.packages[''] as { dependencies: Record<string, string> };
  const devSpecs: Record<string, string> = {};
  for (const d of extraDev) devSpecs[d] = lock.packages[`node_modules/${d}`].version as string;
  const pkg = { name, version: '1.0.0', private: true, dependencies: { forkgc: rel, ...devSpecs } };
  const packages: Record<string, unknown> = {
    '': { name, version: '1.0.0', dependencies: pkg.dependencies },
    'node_modules/forkgc': {
      version, resolved: rel, hasInstallScript: true, license: 'MIT',
      os: ['linux'], dependencies: root.dependencies, engines: manifest.engines, bin: manifest.bin,
    },
  };
  // Our lockfile has no `resolved` URLs (npm finds them from the registry's
  // package documents, which may not be cached); with them, and the integrity,
  // npm takes each tarball from its cache with no request at all.
  const registry = (process.env.npm_config_registry || 'https://registry.npmjs.org/').replace(/\/?$/, '/');
  const pinned = (key: string, entry: Record<string, unknown>) => {
    const name = key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);
    return { resolved: `${registry}${name}/-/${name.split('/').pop()}-${entry.version as string}.tgz`, ...entry };
  };
  // Our runtime dependencies (not dev) are exactly forkgc's, hoisted the same way.
  for (const [k, v] of Object.entries(lock.packages)) {
    if (k !== '' && !v.dev && !v.devOptional) packages[k] = pinned(k, v);
  }
  // The few dev packages the app uses (typescript, @types/node and theirs), as production ones.
  const addDev = (d: string) => {
    const entry = lock.packages[`node_modules/${d}`];
    if (!entry || packages[`node_modules/${d}`]) return;
    const { dev: _dev, devOptional: _o, ...rest } = entry;
    packages[`node_modules/${d}`] = pinned(`node_modules/${d}`, rest);
    for (const sub of Object.keys((entry.dependencies ?? {}) as Record<string, string>)) addDev(sub);
  };
  for (const d of extraDev) addDev(d);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify(pkg, null, 2));
  writeFileSync(path.join(app, 'package-lock.json'),
    JSON.stringify({ name, version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2));
  return app;
}

function npmCiOffline(app: string, extraEnv: Record<string, string> = {}): SpawnSyncReturns<string> {
  return run(process.execPath, [npmCli, 'ci', '--offline', '--no-audit', '--no-fund', '--loglevel=error'],
    app, cleanEnv({ PATH: bareBin, ...extraEnv }), 180_000);
}

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'forkgc-package-'));
  // The packable sources, copied: the package's files (less its build output) and what builds them.
  const stage = path.join(work, 'forkgc');
  mkdirSync(stage);
  const sources = new Set(['package.json', 'package-lock.json', 'README.md', 'LICENSE', 'src', 'tsconfig.json', 'tsconfig.build.json']);
  for (const f of manifest.files) {
    if (!f.startsWith('!') && !/^(dist|prebuilds)\/?$/.test(f)) sources.add(f.replace(/\/$/, ''));
  }
  for (const f of sources) cpSync(path.join(repo, f), path.join(stage, f), { recursive: true });
  symlinkSync(path.join(repo, 'node_modules'), path.join(stage, 'node_modules'));
  const stagedManifest = JSON.parse(readFileSync(path.join(stage, 'package.json'), 'utf8')) as { version: string };
  stagedManifest.version = version;
  writeFileSync(path.join(stage, 'package.json'), JSON.stringify(stagedManifest, null, 2));
  // prepack builds the prebuild (prebuildify: node-gyp with the compilers), prepare the JavaScript.
  const packed = ok(run(process.execPath, [npmCliPath(), 'pack', '--json', '--pack-destination', work, '--loglevel=error'],
    stage, cleanEnv(), 240_000), 'npm pack');
  const info = JSON.parse(packed.slice(packed.indexOf('['))) as Array<{ filename: string }>;
  tarball = path.join(work, info[0].filename);

  bareBin = path.join(work, 'bin');
  mkdirSync(bareBin);
  npmCli = npmCliPath();
  symlinkSync(process.execPath, path.join(bareBin, 'node'));
  symlinkSync(npmCli, path.join(bareBin, 'npm'));
  symlinkSync(realpathSync('/bin/sh'), path.join(bareBin, 'sh'));
}, 300_000);

afterAll(() => {
  // FORKGC_KEEP_PACKAGE_TEST=1 keeps the tarball and the apps, to look at them.
  if (work && !process.env.FORKGC_KEEP_PACKAGE_TEST) rmSync(work, { recursive: true, force: true });
});

function npmCliPath(): string {
  // npm's own entry script, beside the node running us (as npm installs itself).
  const candidates = [
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'),
    process.env.npm_execpath ?? '',
  ];
  const found = candidates.find((c) => c && /npm-cli\.js$/.test(c) && existsSync(c));
  if (found) return realpathSync(found);
  return realpathSync(execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim());
}

describe('the npm package', () => {
  it('ships the prebuilt linux-x64 glibc addon, a LICENSE, no source maps and no tests or benchmarks', () => {
    const list = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n').filter(Boolean);
    expect(list).toContain('package/prebuilds/linux-x64/forkgc.glibc.node');
    expect(list).toContain('package/LICENSE');
    expect(list).toContain('package/dist/index.js');
    expect(list).toContain('package/dist/index.d.ts');
    expect(list.filter((f) => f.endsWith('.map'))).toEqual([]);
    expect(list.filter((f) => /^package\/(test|bench|dist\/(bench|src|test))\//.test(f))).toEqual([]);
  });

  describe('installed into a fresh app with no compiler on PATH, offline', () => {
    let app = '';
    beforeAll(() => {
      // The premise: nothing here could compile the addon.
      const tools = run('sh', ['-c', 'for t in cc c++ g++ gcc clang make python3; do command -v $t; done; true'],
        work, { PATH: bareBin }, 10_000);
      expect(tools.stdout.trim()).toBe('');
      app = makeApp('app', ['typescript', '@types/node']);
      ok(npmCiOffline(app), 'npm ci of the packed tarball');
    }, 240_000);

    it('loads the prebuilt binary: no build/ was made', () => {
      expect(existsSync(path.join(app, 'node_modules/forkgc/build'))).toBe(false);
      expect(existsSync(path.join(app, 'node_modules/forkgc/prebuilds/linux-x64/forkgc.glibc.node'))).toBe(true);
    });

    // A garbage cycle (a <-> b, unrooted) and a rooted pair: the forked child
    // marks, the sweep frees exactly the cycle.
    const cycleScript = (load: string) => `${load}
      const heap = new Heap({ maxHeap: '64MiB', auto: false, sweepThreads: 1 });
      const N = heap.defineStruct('N', { other: 'ref', id: 'u32' });
      const keep = heap.root(N.alloc({ id: 1 }));
      N.set.other(keep.get(), N.alloc({ id: 2 }));
      const a = N.alloc({ id: 3 }); const b = N.alloc({ other: a, id: 4 }); N.set.other(a, b);
      heap.collect().then(async (c) => {
        const out = { mode: c.mode, fallback: c.fallback, childPid: c.childPid, freed: c.objectsFreed,
          kept: N.get.id(N.get.other(keep.get())), objects: heap.stats().objects };
        keep.release();
        await heap.close();
        console.log(JSON.stringify(out));
      }, (e) => { console.error(e); process.exit(1); });`;
    const expectCycle = (stdout: string) => {
      const out = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
      expect(out).toMatchObject({ mode: 'fork', fallback: false, freed: 2, kept: 2, objects: 2 });
      expect(out.childPid).toBeGreaterThan(0);
    };

    it('import (ESM): a heap with a real fork cycle frees exactly the garbage cycle', () => {
      writeFileSync(path.join(app, 'esm.mjs'), cycleScript("import { Heap } from 'forkgc';"));
      expectCycle(ok(run(process.execPath, ['esm.mjs'], app, { PATH: bareBin }, 60_000), 'esm.mjs'));
    }, 90_000);

    it('require (CJS): the same, and require(\'forkgc/package.json\') gives the version', () => {
      writeFileSync(path.join(app, 'cjs.cjs'), cycleScript(
        "const { Heap } = require('forkgc');\nif (require('forkgc/package.json').version !== " +
        `${JSON.stringify(version)}) throw new Error('wrong package.json');`));
      expectCycle(ok(run(process.execPath, ['cjs.cjs'], app, { PATH: bareBin }, 60_000), 'cjs.cjs'));
    }, 90_000);

    it('the CLI prints the package version; `forkgc bench` explains how to run the suite from a clone', () => {
      const bin = path.join(app, 'node_modules/.bin/forkgc');
      expect(ok(run(process.execPath, [bin, '--version'], app, { PATH: bareBin }, 30_000), 'forkgc --version').trim())
        .toBe(version);
      const b = run(process.execPath, [bin, 'bench'], app, { PATH: bareBin }, 30_000);
      expect(b.status).toBe(1);
      expect(b.stderr).toMatch(/not part of the npm package/);
      expect(b.stderr).toMatch(/git clone \S+ && cd forkgc && npm ci && npm run bench/);
    }, 60_000);

    it('without its binary, new Heap() throws NativeLoadError naming only paths inside the package', () => {
      const pkgDir = realpathSync(path.join(app, 'node_modules/forkgc'));
      const binary = path.join(pkgDir, 'prebuilds/linux-x64/forkgc.glibc.node');
      renameSync(binary, `${binary}.away`);
      try {
        writeFileSync(path.join(app, 'noaddon.mjs'), [
          "import { Heap } from 'forkgc';",
          "try { new Heap({ maxHeap: '64MiB' }); console.log(JSON.stringify({ thrown: false })); }",
          'catch (e) { console.log(JSON.stringify({ thrown: true, name: e.name, code: e.code, message: e.message })); }',
        ].join('\n'));
        const out = JSON.parse(ok(run(process.execPath, ['noaddon.mjs'], app, { PATH: bareBin }, 30_000), 'noaddon.mjs').trim()) as
          { thrown: boolean; name: string; code: string; message: string };
        expect(out).toMatchObject({ thrown: true, name: 'NativeLoadError', code: 'ERR_NATIVE_LOAD' });
        expect(out.message).toMatch(/prebuilt binary for linux-x64 with glibc 2.34 or newer/);
        expect(out.message).toMatch(/python3, make and a C\+\+ compiler/);
        // Absolute paths: a slash not preceded by a word (as in "Debian/Ubuntu").
        const paths = (out.message.match(/(?<![\w.])\/[\w.@+-]+(?:\/[\w.@+-]+)*/g) ?? []).map((p) => p.replace(/\.+$/, ''));
        expect(paths.length).toBeGreaterThan(0);
        for (const p of paths) expect(p.startsWith(pkgDir), `${p} is outside ${pkgDir}`).toBe(true);
      } finally {
        renameSync(`${binary}.away`, binary);
      }
    }, 60_000);

    it('TypeScript (moduleResolution node10, no skipLibCheck) compiles against the published types', () => {
      writeFileSync(path.join(app, 'use.ts'), [
        "import { Heap, ForkGcError, type HeapOptions, type CycleStats, type Ref } from 'forkgc';",
        "const options: HeapOptions = { maxHeap: '64MiB', mode: 'fork', sweepThreads: 0 };",
        'const heap = new Heap(options);',
        "const T = heap.defineStruct('T', { next: 'ref', n: 'i32' });",
        'const r: Ref = T.alloc({ n: 1 });',
        'const n: number = T.get.n(r);',
        'heap.collect().then((c: CycleStats) => c.pauseUs + n, (e: unknown) => e instanceof ForkGcError);',
        '',
      ].join('\n'));
      writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify({
        compilerOptions: {
          module: 'commonjs', moduleResolution: 'node10', target: 'es2022', lib: ['es2022'], strict: true, noEmit: true,
          types: ['node'], skipLibCheck: false,
        },
        files: ['use.ts'],
      }));
      const tsc = path.join(app, 'node_modules/typescript/bin/tsc');
      ok(run(process.execPath, [tsc, '-p', '.'], app, { PATH: bareBin }, 60_000), 'tsc');
    }, 90_000);
  });

  it('where no prebuild matches (musl libc) and nothing can compile, the install fails saying what to install', () => {
    const app = makeApp('app-musl', []);
    // node-gyp-build picks prebuilds by libc; LIBC=musl is how it is told it runs on one.
    const r = npmCiOffline(app, { LIBC: 'musl' });
    if (process.env.FORKGC_KEEP_PACKAGE_TEST) writeFileSync(path.join(app, 'install-output.txt'), `${r.stdout}\n${r.stderr}`);
    expect(r.status).not.toBe(0);
    const all = `${r.stdout}\n${r.stderr}`;
    expect(all).toMatch(/no prebuilt binary for linux-x64 \(musl\)/);
    expect(all).toMatch(/missing here: python3, make, a C\+\+ compiler/);
    expect(all).toMatch(/apt-get install python3 make g\+\+/);
  }, 240_000);

  it('publint finds nothing to report in the tarball', async () => {
    const { publint } = await import('publint');
    const { formatMessage } = await import('publint/utils');
    const bytes = readFileSync(tarball);
    const result = await publint({
      pack: { tarball: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) },
      level: 'suggestion',
      strict: true,
    });
    expect(result.messages.map((m) => `${m.type}: ${formatMessage(m, result.pkg) ?? m.code}`)).toEqual([]);
  }, 60_000);

  it('arethetypeswrong finds no type resolution problem in the tarball', () => {
    const attw = path.join(repo, 'node_modules/@arethetypeswrong/cli/dist/index.js');
    // cjs-resolves-to-esm: attw (TypeScript 5.6) does not model require(esm);
    // forkgc is ESM-only and require() works through Node's require(esm)
    // (engines: ^20.19 || >=22.12), which the CJS test above runs for real.
    const r = run(process.execPath, [attw, tarball, '--format', 'ascii', '--no-definitely-typed', '--no-color',
      '--ignore-rules', 'cjs-resolves-to-esm'], work, cleanEnv(), 60_000);
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
  }, 90_000);
});
