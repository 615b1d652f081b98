// What the benchmarks lay over a mutator gap: the thread clock
// (bench/lib/thread-clock.ts), which splits it into time on a CPU, time
// waiting for one, and neither (a sleeping main thread must read as
// "neither", a spinning one as running or waiting, and a window must bracket
// the interval asked for); and V8's collections inside it (lib/meter.ts).
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ThreadClock, statProcessor } from '../bench/lib/thread-clock.js';
import { readFileSync } from 'node:fs';

const linux = existsSync('/proc/thread-self/schedstat');

function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* on a CPU */ }
}

describe.runIf(linux)('thread clock', () => {
  // A spin counts as "off" only for time the hypervisor stole from the
  // vCPU: on a busy host that can be most of a 40 ms window (seen once in
  // the full suite: 40.9 ms of run and wait against 41.0 off). Three tries;
  // a clock that files a spin as off fails all three.
  it('a sleep is neither running nor waiting for a CPU; a spin is not off', async () => {
    let failure: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await sleepThenSpin();
        return;
      } catch (e) {
        failure = e;
      }
    }
    throw failure;
  });

  async function sleepThenSpin(): Promise<void> {
    const c = new ThreadClock();
    c.open();
    c.sample();
    const sleepStart = performance.now();
    await new Promise((r) => setTimeout(r, 60));
    const sleepEnd = performance.now();
    c.sample();
    spin(40);
    const spinEnd = performance.now();
    c.sample();
    c.close();

    const slept = c.over(sleepStart, sleepEnd);
    expect(slept).not.toBeNull();
    expect(slept!.windowMs).toBeGreaterThanOrEqual(55);
    // Run and run-queue time are the thread's own: a sleep adds to neither.
    expect(slept!.offMs).toBeGreaterThan(40);
    expect(slept!.runMs).toBeLessThan(20);

    const spun = c.over(sleepEnd + 1, spinEnd);
    expect(spun).not.toBeNull();
    // On a CPU or runnable the whole time, but for stolen time (off). A
    // running thread's run time is brought up to date only at ticks (4 ms
    // here) and switches, so run + wait may pass the window by up to a tick
    // at each end (off is then 0); it never falls short of it with off.
    const accounted = spun!.runMs + spun!.runDelayMs + spun!.offMs;
    expect(accounted).toBeGreaterThanOrEqual(spun!.windowMs - 1e-6);
    expect(accounted).toBeLessThan(spun!.windowMs + 2 * 10);
    expect(spun!.runMs).toBeGreaterThan(0);
    expect(spun!.runMs + spun!.runDelayMs).toBeGreaterThan(spun!.offMs);

    // From the first sample to the last: the spin's run, not the sleep.
    const total = c.total()!;
    expect(total.runMs).toBeGreaterThanOrEqual(spun!.runMs);
    expect(total.runMs).toBeLessThan(slept!.windowMs + spun!.windowMs);
  }

  it('two gaps back to back: the second one\'s window starts at its own start (samples filed at the time the caller read)', () => {
    // The meter samples at the end of each gap, which is where the next gap
    // starts; filed under a later time, the next gap's window began at the
    // sample before the previous gap and counted it in.
    const c = new ThreadClock();
    c.open();
    const t1 = performance.now();
    c.sample(t1);
    spin(24);
    const t2 = performance.now();
    c.sample(t2);
    spin(15);
    const t3 = performance.now();
    c.sample(t3);
    c.close();
    const w = c.over(t2, t3)!;
    expect(w).not.toBeNull();
    expect(w.windowMs).toBeLessThanOrEqual(t3 - t2 + 0.5);
  });

  it('a window needs samples on both sides', () => {
    const c = new ThreadClock();
    c.open();
    const before = performance.now() - 1000;
    c.sample();
    spin(2);
    c.sample();
    c.close();
    expect(c.over(before, performance.now() - 1)).toBeNull();  // no sample before it
    expect(c.over(performance.now() - 1, performance.now() + 1000)).toBeNull();  // none after it
  });

  it('an unopened clock records nothing', () => {
    const c = new ThreadClock();
    c.sample();
    c.sample();
    expect(c.over(0, 1)).toBeNull();
    expect(c.total()).toBeNull();
  });
});

describe('V8 collections over a gap', () => {
  it('counts the time V8 collected inside an interval, and none outside', async () => {
    const { V8GcObserver } = await import('../bench/lib/meter.js');
    const obs = new V8GcObserver();
    const t0 = performance.now();
    obs.start();
    // Garbage enough for several scavenges.
    let keep: number[][] = [];
    for (let i = 0; i < 200_000; i++) {
      keep.push(new Array(16).fill(i));
      if (keep.length > 1000) keep = [];
    }
    await new Promise((r) => setTimeout(r, 20));
    const t1 = performance.now();
    await obs.stop();
    const total = obs.pausesMs.reduce((a, b) => a + b, 0);
    expect(obs.pausesMs.length).toBeGreaterThan(0);
    expect(obs.overlapMs(t0, t1 + 1000)).toBeCloseTo(total, 6);
    expect(obs.overlapMs(t0 - 1000, t0 - 1)).toBe(0);
  });
});

describe('where the main thread ran (field 39 of its stat line)', () => {
  const line = (comm: string, cpu: number) => {
    // pid (comm) state, then fields 4..52: field 39 is the processor.
    const rest = Array.from({ length: 50 }, (_, i) => (i + 3 === 39 ? String(cpu) : String(1000 + i)));
    return Buffer.from(`4242 (${comm}) ${rest.join(' ')}\n`);
  };
  it('reads the processor after the command, whatever the command holds', () => {
    expect(statProcessor(line('node', 1))).toBe(1);
    expect(statProcessor(line('a b) (c 9 9', 17))).toBe(17);
    const b = line('node', 3);
    expect(statProcessor(b, b.length)).toBe(3);
    expect(statProcessor(Buffer.from('4242 (node) S 1 2'))).toBe(-1);
    expect(statProcessor(Buffer.from('no parenthesis'))).toBe(-1);
  });
  it.runIf(linux)('agrees with this thread\'s own stat line, and the clock counts its samples per CPU', () => {
    const own = readFileSync('/proc/thread-self/stat');
    const fields = own.toString().slice(own.toString().lastIndexOf(')') + 2).split(' ');
    expect(statProcessor(own)).toBe(Number(fields[39 - 3]));
    const c = new ThreadClock();
    c.open();
    for (let i = 0; i < 5; i++) c.sample();
    c.close();
    const shares = c.cpuShares()!;
    expect(Object.values(shares).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 2);
    for (const cpu of Object.keys(shares)) expect(Number(cpu)).toBeLessThan(1024);
  });
});
