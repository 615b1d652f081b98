import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The addon forks and maps memory: one process per test file, never threads.
    pool: 'forks',
    maxWorkers: 2,
    // Tests that make fork() fail on purpose make the heap warn FORKGC_FALLBACK
    // (once per heap); Node would print each one as "(node:PID) Warning: ...",
    // which reads like a failure in a passing run. The tests assert on the
    // warnings through process.on('warning'), which still fires.
    // --no-experimental-require-module: once in about seven full runs a test
    // worker died at load with Node 20's "FATAL ERROR: v8::Module::IsGraphAsync
    // must be used on an instantiated module" (loadESMFromCJS: a require() of
    // an ES module racing an import() of it, a known Node race). Nothing in
    // the workers needs require(esm): the whole suite passes without it.
    execArgv: ['--disable-warning=FORKGC_FALLBACK', '--no-experimental-require-module'],
    // Every wait on a child is bounded here too, so no test can hang CI.
    testTimeout: 60_000,
    hookTimeout: 30_000,
    teardownTimeout: 10_000,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
