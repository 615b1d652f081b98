/**
 * The child is a real forked process (design: "The child"), and it is reaped.
 *
 *   - fork mode: childPid > 0, != process.pid, a new process each cycle, and
 *     while the cycle runs it is a child of this process in /proc;
 *   - after each cycle the child is gone (not a zombie, not running);
 *   - after 100 cycles this process has no zombie child;
 *   - the child keeps only its pipe of the parent's descriptors and blocks signals;
 *   - close() during a cycle kills and reaps the child, and the pending collect()
 *     settles;
 *   - stw mode: childPid is 0 and no process is created.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Heap } from '../src/index.js';
import { ForkGcError } from '../src/index.js';
import { childrenOf, closeHeap, closeHeapsAfterEach, mainThreadChildren, makeHeap, procStat, withTimeout } from './helpers/common.js';
import { defineSchema, type Schema } from './helpers/graph.js';

closeHeapsAfterEach();

/** Fills heap with `chains` rooted chains of `perChain` Nodes (about 48 bytes each). */
function populate(heap: Heap, schema: Schema, chains: number, perChain: number): void {
  const Node = schema.structs.Node;
  const top = heap.arrays.alloc(chains);
  heap.root(top);
  for (let c = 0; c < chains; c++) {
    let head = 0;
    for (let k = 0; k < perChain; k++) head = Node.alloc({ left: head, value: k, id: c });
    heap.arrays.set(top, c, head);
  }
}

/** True if pid is a process whose parent is this process (running or zombie). */
function isOurChild(pid: number): boolean {
  const st = procStat(pid);
  return st !== null && st.ppid === process.pid;
}

function busyWaitMs(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    /* spin: the event loop must not run */
  }
}

describe('the child is a real forked process', () => {
  it('fork mode: childPid is positive, not this process, and new for every cycle', async () => {
    const heap = makeHeap({ mode: 'fork' });
    const schema = defineSchema(heap);
    populate(heap, schema, 4, 100);
    const pids: number[] = [];
    for (let i = 0; i < 5; i++) {
      const c = await heap.collect();
      expect(c.mode).toBe('fork');
      expect(Number.isInteger(c.childPid)).toBe(true);
      expect(c.childPid).toBeGreaterThan(0);
      expect(c.childPid).not.toBe(process.pid);
      expect(c.childPid).not.toBe(process.ppid);
      pids.push(c.childPid);
    }
    // one process per cycle (pids are allocated sequentially; a repeat would mean a reused child)
    for (let i = 1; i < pids.length; i++) expect(pids[i]).not.toBe(pids[i - 1]);
  }, 30_000);

  it('while the cycle runs, the child is a process whose parent is this process', async () => {
    // ~20 MiB of small objects: the bitmap exceeds a pipe buffer and marking takes a while,
    // so the child is still there (running or exited-unreaped) when collect() returns
    const heap = makeHeap({ mode: 'fork', maxHeap: '128MiB' });
    const schema = defineSchema(heap);
    populate(heap, schema, 100, 4000);
    let observed = false;
    for (let attempt = 0; attempt < 5 && !observed; attempt++) {
      const before = new Set(mainThreadChildren());
      const p = heap.collect();
      const during = mainThreadChildren().filter((pid) => !before.has(pid));
      const st = during.map((pid) => procStat(pid));
      const c = await withTimeout(p, 30_000, 'collect');
      if (during.includes(c.childPid)) {
        observed = true;
        const s = st[during.indexOf(c.childPid)];
        expect(s === null || s.ppid === process.pid).toBe(true);
      }
    }
    expect(observed, 'the cycle’s child never showed up among this process’s children').toBe(true);
  }, 60_000);

  it('the child keeps only its pipe of the parent’s descriptors and blocks signals', async () => {
    const heap = makeHeap({ mode: 'fork', maxHeap: '128MiB' });
    const schema = defineSchema(heap);
    populate(heap, schema, 100, 4000);
    // this process has several descriptors (sockets/pipes to vitest, epoll, ...)
    expect(readdirSync('/proc/self/fd').length).toBeGreaterThan(3);
    let verdict: string | null = null;
    let lastSeen = '';
    for (let attempt = 0; attempt < 5 && verdict === null; attempt++) {
      const before = new Set(mainThreadChildren());
      const p = heap.collect();
      const pid = mainThreadChildren().find((x) => !before.has(x));
      if (pid !== undefined) {
        // poll without yielding: the parent does not drain the pipe, so the child stays alive
        const end = Date.now() + 1000;
        while (Date.now() < end && verdict === null) {
          const st = procStat(pid);
          if (!st || st.state === 'Z') break; // exited already: inconclusive, try another cycle
          let links: string[];
          let sigBlk = '';
          try {
            links = readdirSync(`/proc/${pid}/fd`).map((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`));
            sigBlk = /^SigBlk:\s*([0-9a-f]+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '';
          } catch {
            break;
          }
          lastSeen = `fds ${JSON.stringify(links)} SigBlk ${sigBlk}`;
          // (Its own /proc/<pid>/pagemap is no descriptor of the parent's: the
          // child opens it first thing, to count copied pages at its end.)
          const kept = links.filter((l) => l !== '/dev/null' && !/^\/proc\/\d+\/pagemap$/.test(l));
          if (kept.length === 1 && kept[0].startsWith('pipe:') && /[1-9a-f]/.test(sigBlk)) verdict = 'ok';
          else busyWaitMs(2);
        }
      }
      await withTimeout(p, 30_000, 'collect');
    }
    expect(verdict, `child descriptors/signal mask never as expected; last seen: ${lastSeen || 'child not observed alive'}`).toBe('ok');
  }, 60_000);

  it('each child is reaped when its cycle ends', async () => {
    const heap = makeHeap({ mode: 'fork' });
    const schema = defineSchema(heap);
    populate(heap, schema, 8, 200);
    for (let i = 0; i < 20; i++) {
      const c = await heap.collect();
      // a reaped child has no /proc entry (or the pid was reused by someone else's process)
      expect(isOurChild(c.childPid), `child ${c.childPid} of cycle ${i}: ${JSON.stringify(procStat(c.childPid))}`).toBe(false);
    }
  }, 60_000);

  it('after 100 cycles there is no zombie child of this process', async () => {
    const heap = makeHeap({ mode: 'fork' });
    const schema = defineSchema(heap);
    populate(heap, schema, 4, 100);
    const pids = new Set<number>();
    for (let i = 0; i < 100; i++) {
      // a little garbage each cycle, so cycles do some work
      for (let k = 0; k < 50; k++) schema.structs.Leaf.alloc({ v: k });
      const c = await heap.collect();
      pids.add(c.childPid);
    }
    expect(pids.size).toBeGreaterThan(90);
    const zombies = childrenOf().filter((c) => c.state === 'Z');
    expect(zombies, 'zombie children of this process').toEqual([]);
    const ours = [...pids].filter(isOurChild);
    expect(ours, 'cycle children still children of this process').toEqual([]);
  }, 120_000);

  it('close() during a cycle kills and reaps the child, and the pending collect() settles', async () => {
    const heap = makeHeap({ mode: 'fork', maxHeap: '128MiB' });
    const schema = defineSchema(heap);
    populate(heap, schema, 100, 4000);
    const before = new Set(mainThreadChildren());
    const p = heap.collect();
    const settled = p.then(
      () => 'resolved',
      (e: unknown) => e,
    );
    const child = mainThreadChildren().find((x) => !before.has(x));
    await withTimeout(closeHeap(heap), 15_000, 'close() during a cycle');
    const outcome = await withTimeout(settled, 15_000, 'collect() pending across close()');
    if (outcome !== 'resolved') expect(outcome, String(outcome)).toBeInstanceOf(ForkGcError);
    expect(child, 'the cycle’s child was not seen right after collect()').toBeDefined();
    expect(isOurChild(child!), `child ${child} after close(): ${JSON.stringify(procStat(child!))}`).toBe(false);
    expect(childrenOf().filter((c) => !before.has(c.pid))).toEqual([]);
  }, 60_000);
});

describe('stw mode forks nothing', () => {
  it('childPid is 0 and no child process appears', async () => {
    const heap = makeHeap({ mode: 'stw' });
    const schema = defineSchema(heap);
    populate(heap, schema, 8, 200);
    for (let i = 0; i < 5; i++) {
      const before = new Set(childrenOf().map((c) => c.pid));
      const p = heap.collect();
      const during = childrenOf().filter((c) => !before.has(c.pid));
      const c = await p;
      expect(c.mode).toBe('stw');
      expect(c.childPid).toBe(0);
      expect(c.bitmapBytes).toBe(0);
      expect(during).toEqual([]);
    }
  }, 30_000);
});
