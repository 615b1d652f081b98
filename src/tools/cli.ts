#!/usr/bin/env node
// The `forkgc` command: see a cycle happen on your own machine.
//
//   forkgc demo              narrates one cycle with its real figures
//   forkgc cow-map           pictures the arena's pages mid-cycle (HTML or SVG)
//   forkgc trace FILE        runs a workload and writes a Perfetto trace
//   forkgc bench [args...]   runs the benchmark suite from a clone (compiles bench/, runs dist/bench/run.js)
//   forkgc pressure          shows the memory pressure (PSI) the heap would react to
//
// docs/how-it-works.md uses these commands section by section.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { CowMapper, PageKind, pageBytes, type CowMap } from './cow-budget.js';
import { CycleAbortedError } from '../index.js';
import { Heap } from '../index.js';
import type { HeapOptions } from '../index.js';
import { packageRoot } from '../internal.js';
import { pressureSource, readPressure } from './pressure.js';
import { Progress } from './progress.js';
import type { CycleStats } from '../index.js';
import { startTrace, TRACE_NAMES } from './trace.js';
import type { Ref } from '../index.js';


// ---- helpers -------------------------------------------------------------------

function int(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    return n;
  };
}

function num(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`expected a number from ${min} to ${max}`);
    return n;
  };
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(bytes >= 10 * 2 ** 20 ? 1 : 2);
const kib = (bytes: number) => (bytes / 1024).toFixed(0);
const n0 = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (x: number) => x.toFixed(x < 10 ? 2 : 1);

/**
 * The workload of the demos: a table of `records` records (a struct with a
 * string each), rooted by one array, then `garbage` records that nothing
 * keeps, allocated after the live ones so that whole spans of them die.
 */
function buildWorkload(heap: Heap, records: number, garbage: number) {
  const Rec = heap.defineStruct('Record', { name: 'ref', next: 'ref', id: 'u32', score: 'f64' });
  const table = heap.root(heap.arrays.alloc(records));
  const t = table.get();
  for (let i = 0; i < records; i++) {
    const r = Rec.alloc({ id: i, score: i / 7 });
    Rec.set.name(r, heap.strings.alloc(`record-${i}`));
    heap.arrays.set(t, i, r);
  }
  let chain = 0;
  for (let i = 0; i < garbage; i++) {
    chain = Rec.alloc({ id: i, next: (i & 63) === 0 ? 0 : chain });
    Rec.set.name(chain, heap.strings.alloc(`garbage-${i}`));
  }
  return { Rec, table };
}

type Workload = ReturnType<typeof buildWorkload>;

/** Indices of records on `pages` distinct arena pages (one record per page), spread over the table. */
function recordsOnDistinctPages(heap: Heap, w: Workload, pages: number): number[] {
  const page = pageBytes(heap);
  const t = w.table.get();
  const n = heap.arrays.length(t);
  const seen = new Set<number>();
  const firstOnPage: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = Math.floor((heap.arrays.get(t, i) * 16) / page);
    if (!seen.has(p)) {
      seen.add(p);
      firstOnPage.push(i);
    }
  }
  if (pages >= firstOnPage.length) return firstOnPage;
  const step = firstOnPage.length / pages;
  return Array.from({ length: pages }, (_, k) => firstOnPage[Math.floor(k * step)]);
}

/** Mutates the heap while the child marks: writes to records (one per page), allocates rooted objects. */
function mutateDuringCycle(heap: Heap, w: Workload, indices: number[], allocate: number): void {
  // Refs are fetched from the root after the safepoint (the rooting contract).
  const t = w.table.get();
  for (const i of indices) w.Rec.set.score(heap.arrays.get(t, i), -1);
  if (allocate > 0) {
    const extra = heap.arrays.alloc(allocate);
    for (let i = 0; i < allocate; i++) heap.arrays.set(extra, i, w.Rec.alloc({ id: i }));
    // Keep them reachable from the table's record 0 chain: live whatever the child saw.
    const first = heap.arrays.get(t, 0);
    const keeper = w.Rec.alloc({ id: 0xfffffff });
    w.Rec.set.next(first, keeper);
    w.Rec.set.name(keeper, extra);
  }
}

function heapOptions(o: { mode?: 'fork' | 'stw'; hugePages?: boolean; hold?: number; maxHeap?: string }): HeapOptions {
  return {
    maxHeap: o.maxHeap ?? '1GiB',
    auto: false,
    mode: o.mode ?? 'fork',
    hugePages: o.hugePages ?? true,
    ...(o.hold && o.hold > 0 && (o.mode ?? 'fork') === 'fork'
      ? { faultInjectionForTesting: { kind: 'delay-before-mark' as const, arg: o.hold } }
      : {}),
  };
}

// ---- forkgc demo -------------------------------------------------------------------

interface DemoOptions {
  records: number; garbage: number; writes: number; allocate: number; hold: number;
  mode: 'fork' | 'stw'; hugePages: boolean; killChild: boolean; secondHeap: boolean;
}

async function demo(o: DemoOptions): Promise<void> {
  // With a second heap the parent's writes must land while the first child
  // still lives: starting the second heap (its threads, its fork) can take
  // longer than 100 ms on a loaded machine, and an allocation after the
  // child has ended completes the cycle (a small heap's sweep is inline),
  // after which the writes reuse freed slots on pages the second child
  // still shares.
  const hold = o.killChild ? Math.max(o.hold, 2000) : o.secondHeap && o.mode === 'fork' ? Math.max(o.hold, 1000) : o.hold;
  const heap = new Heap(heapOptions({ ...o, hold }));
  try {
    const out = (s: string) => process.stdout.write(`${s}\n`);
    out(`forkgc demo: pid ${process.pid}, Node ${process.version}, ${o.mode} mode${o.hugePages ? ', huge pages' : ''}` +
      (o.mode === 'fork' && hold > 0 ? `; the child will wait ${hold} ms before marking (--hold)` : ''));
    const w = buildWorkload(heap, o.records, o.garbage);
    const before = heap.stats();
    out(`built ${n0(o.records)} live records (${n0(2 * o.records + 1)} objects) and ${n0(o.garbage)} garbage ones ` +
      `(${n0(2 * o.garbage)} objects): heap ${mib(before.heapBytes)} MiB, ${n0(before.objects)} objects, ` +
      `RSS ${mib(process.memoryUsage().rss)} MiB\n`);
    const targets = o.mode === 'fork' ? recordsOnDistinctPages(heap, w, o.writes) : [];
    let t0 = 0;
    const at = (timeMs: number) => `[${(timeMs - t0).toFixed(3).padStart(9)} ms]`;
    heap.on('cycleStart', (e) => {
      t0 = e.timeMs;
      out(`${at(e.timeMs)} cycle ${e.cycleId} starts (${e.trigger}): ${mib(e.heapBytes)} MiB of spans, ` +
        `${mib(e.liveBytes)} MiB not yet known to be garbage; the snapshot covers granules [0, ${n0(e.topGranule)})`);
    });
    let childPid = 0;
    heap.on('fork', (e) => { childPid = e.pid; });
    heap.on('fork', (e) => out(`${at(e.timeMs)} fork() returned: the mutator paused ${n0(e.pauseUs)} µs ` +
      `(the system call itself ${n0(e.forkUs)} µs); the child is pid ${e.pid}`));
    heap.on('mark', (e) => out(`${at(e.timeMs)} stop-the-world marking: ${n0(e.objectsMarked)} objects in ${ms(e.markMs)} ms, all of it a pause`));
    heap.on('childDone', (e) => out(`${at(e.timeMs)} the child's trailer: ${n0(e.objectsMarked)} objects (${mib(e.bytesMarked)} MiB) ` +
      `marked in ${ms(e.markMs)} ms; it lived ${ms(e.childMs)} ms, peak RSS ${n0(e.childMaxRssKb)} KiB; it counted ` +
      `${e.cowBytes < 0 ? 'an unknown number of' : n0(e.cowBytes / pageBytes(heap))} pages the parent had copied`));
    heap.on('stream', (e) => out(`${at(e.timeMs)} stream accepted: ${n0(e.streamBytes)} bytes (${n0(e.bitmapBytes)} of bitmap), ` +
      `first byte at ${at(e.firstByteMs).trim()}; every checksum held and the child exited 0`));
    heap.on('sweepStart', (e) => out(`${at(e.timeMs)} sweep starts over ${n0(e.spans)} spans`));
    heap.on('sweepEnd', () => out(`${at(performance.now())} sweep done`));
    heap.on('abort', (e) => out(`${at(performance.now())} cycle aborted (${e.reason}): ${e.message}`));

    // With a second heap the child's count undercounts (section 7 of
    // docs/how-it-works.md), so the parent counts its copies too, from its
    // own page map, while the second child still shares every page it did not write.
    const mapper = o.secondHeap && o.mode === 'fork' ? new CowMapper(heap) : undefined;
    const cycle = heap.collect();
    let second: { heap: Heap; cycle: Promise<CycleStats> } | undefined;
    if (o.secondHeap && o.mode === 'fork') {
      // A second heap forks while the first one's child lives, plainly: its
      // child inherits a copy of the whole process, the first heap's arena
      // included. (Selectively, the first heap's arena would be left out of
      // it: another heap's arena is nothing its child reads.)
      const other = new Heap({
        maxHeap: '64MiB', auto: false, selectiveFork: false,
        faultInjectionForTesting: { kind: 'delay-before-mark', arg: hold + 1000 },
      });
      other.strings.alloc('a second heap');
      second = { heap: other, cycle: other.collect() };
      second.cycle.catch(() => undefined);
      out(`${at(performance.now())} a second heap forked too, plainly (selectiveFork: false; its child is held ${hold + 1000} ms): ` +
        'every resident page of the first heap is now mapped three times (parent, first child, second child)');
    }
    let parentCopied = -1;
    if (o.mode === 'fork') {
      mutateDuringCycle(heap, w, targets, o.allocate);
      out(`${at(performance.now())} meanwhile the parent wrote to ${n0(targets.length)} distinct pages and allocated ` +
        `${n0(o.allocate)} new objects (allocated black)`);
      if (mapper) {
        parentCopied = mapper.capture()?.counts.copied ?? -1;
        mapper.close();
        out(`${at(performance.now())} the parent's own page map: ${parentCopied < 0 ? 'unreadable' : `${n0(parentCopied)} arena pages ` +
          'that it shared at the fork are now mapped by it alone: the kernel copied them for its writes'}`);
      }
      if (o.killChild) {
        const pid = childPid;
        out(`${at(performance.now())} killing the child (SIGKILL ${pid}) in the middle of its work`);
        if (pid > 0) process.kill(pid, 'SIGKILL');
      }
    }
    let c: CycleStats;
    try {
      c = await cycle;
      if (second) {
        const s2 = await second.cycle.catch(() => undefined);
        await second.heap.close();
        out(`${at(performance.now())} the second heap's cycle ended too (its child counted ` +
          `${s2 ? n0(s2.cowBytes / pageBytes(heap)) : '?'} copied pages of its own heap)`);
        out(`nested forks: the parent wrote to ${n0(targets.length)} pages of the first heap, and its page map shows ` +
          `${parentCopied < 0 ? '(unreadable)' : n0(parentCopied)} pages copied for it; ` +
          `but the first child counted only ${n0(c.cowBytes / pageBytes(heap))}: the originals were still mapped by BOTH children, ` +
          'so neither had them to itself (pagemap bit 56 means "mapped exactly once"). A page is freed when its last mapping goes.');
      }
    } catch (e) {
      if (!(e instanceof CycleAbortedError)) throw e;
      const s = heap.stats();
      out('');
      out(`The cycle aborted (${e.reason}): nothing was freed. The heap still holds ${n0(s.objects)} objects ` +
        `(${mib(s.liveBytes)} MiB counted live, as before the cycle); the next cycle will find the garbage again.`);
      return;
    }
    const page = pageBytes(heap);
    out('');
    if (c.mode === 'fork' && !c.fallback) {
      const cowPages = c.cowBytes < 0 ? -1 : c.cowBytes / page;
      out(`fork took ${n0(c.forkUs)} µs (a mutator pause of ${n0(c.pauseUs)} µs in all); ` +
        `child pid ${c.childPid} marked ${n0(c.objectsMarked)} objects in ${ms(c.markMs)} ms; ` +
        `the pipe carried ${n0(c.streamBytes)} bytes; ` +
        (cowPages < 0
          ? 'the child could not read its pagemap, so the copies are unknown; '
          : o.hugePages
            ? `the child counted ${n0(cowPages)} pages copied by the parent's writes (with huge pages the kernel does not say ` +
              'which 4 KiB pages the child maps alone, so this undercounts; --no-huge-pages counts every copy); '
            : second
              ? `the first child counted ${n0(cowPages)} pages (${kib(c.cowBytes)} KiB) copied by the parent's writes, ` +
                `the parent's page map ${parentCopied < 0 ? 'could not be read' : `${n0(parentCopied)}`} (nested forks: above); `
              : `while the child worked the parent copied ${n0(cowPages)} page${cowPages === 1 ? '' : 's'} (${kib(c.cowBytes)} KiB) by writing to them; `) +
        `the sweep freed ${n0(c.objectsFreed)} objects and returned ${mib(c.bytesReturned)} MiB to the OS.`);
      out(`(the child's peak RSS was ${n0(c.childMaxRssKb)} KiB, mostly pages it shares with the parent; ` +
        `the ${n0(o.allocate)} objects allocated during the cycle survived it: ${n0(heap.stats().objects)} objects remain)`);
    } else {
      out(`stop-the-world: the mutator paused ${n0(c.pauseUs)} µs while ${n0(c.objectsMarked)} objects were marked in-process; ` +
        `the sweep freed ${n0(c.objectsFreed)} objects and returned ${mib(c.bytesReturned)} MiB to the OS.`);
    }
    w.table.release();
  } finally {
    await heap.close();
  }
}

// ---- forkgc cow-map ---------------------------------------------------------------

interface CowMapOptions { out: string; records: number; garbage: number; writes: number; allocate: number; hold: number }

async function cowMap(o: CowMapOptions): Promise<void> {
  // 4 KiB pages: with huge pages the kernel does not report per 4 KiB page
  // whether a page is mapped once (pagemap bit 56), so the map would be a guess.
  const heap = new Heap(heapOptions({ hold: o.hold, hugePages: false }));
  try {
    const w = buildWorkload(heap, o.records, o.garbage);
    const targets = recordsOnDistinctPages(heap, w, o.writes);
    const mapper = new CowMapper(heap);
    const cycle = heap.collect();
    mutateDuringCycle(heap, w, targets, o.allocate);
    // The child sleeps `hold` ms before it marks: it is alive now.
    const map = mapper.capture();
    mapper.close();
    const c = await cycle;
    if (!map) {
      console.error('forkgc cow-map: could not read this process\'s page map (/proc/self/pagemap, /proc/self/mem); ' +
        'nothing was drawn. Is /proc mounted?');
      process.exitCode = 1;
      return;
    }
    const html = /\.svg$/i.test(o.out) ? renderSvg(map, c, o) : renderHtml(map, c, o);
    writeFileSync(o.out, html);
    const k = map.counts;
    console.log(`cycle ${c.id}, child pid ${c.childPid}, captured ${o.hold} ms into its life: ` +
      `${n0(map.pages.length)} arena pages of ${map.pageBytes} bytes`);
    console.log(`  shared with the child  ${n0(k.shared).padStart(9)}`);
    console.log(`  copied by the parent   ${n0(k.copied).padStart(9)}   (it wrote to ${n0(targets.length)} distinct pages; ` +
      `the child counted ${c.cowBytes < 0 ? '?' : n0(c.cowBytes / map.pageBytes)} at its end)`);
    console.log(`  new since the fork     ${n0(k.new).padStart(9)}   (${n0(o.allocate)} objects allocated during the cycle)`);
    console.log(`  not resident           ${n0(k.absent).padStart(9)}`);
    console.log(`wrote ${o.out}`);
    w.table.release();
  } finally {
    await heap.close();
  }
}

const COLORS: Record<number, string> = {
  [PageKind.Absent]: '#e4e4e4', [PageKind.Shared]: '#3f9e6b', [PageKind.Copied]: '#d6384e', [PageKind.New]: '#2f7ed8',
};
const LABELS: Record<number, string> = {
  [PageKind.Shared]: 'shared with the child', [PageKind.Copied]: 'copied by the parent (written during the cycle)',
  [PageKind.New]: 'new since the fork (never shared)', [PageKind.Absent]: 'not resident',
};

function mapSvg(map: CowMap): string {
  const maxCells = 32768;
  const per = Math.max(1, Math.ceil(map.pages.length / maxCells));  // pages per cell
  const cells = Math.ceil(map.pages.length / per);
  const cols = 128;
  const size = 6;
  const rows = Math.ceil(cells / cols);
  const width = cols * size;
  const height = rows * size;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height + 4}" viewBox="0 0 ${width} ${height + 4}" shape-rendering="crispEdges">`);
  parts.push(`<title>forkgc arena pages, cycle ${map.cycleId}: one cell = ${per} page(s) of ${map.pageBytes} bytes</title>`);
  // Runs of one kind on a row become one rect.
  for (let r = 0; r < rows; r++) {
    let runStart = 0;
    let runKind = -1;
    const flush = (end: number) => {
      if (runKind >= 0 && end > runStart) {
        parts.push(`<rect x="${runStart * size}" y="${r * size}" width="${(end - runStart) * size}" height="${size - 1}" fill="${COLORS[runKind]}"/>`);
      }
    };
    for (let col = 0; col < cols; col++) {
      const cell = r * cols + col;
      if (cell >= cells) break;
      // A cell of several pages shows the most telling kind: copied > new > shared > absent.
      let kind: number = PageKind.Absent;
      for (let p = cell * per; p < Math.min(map.pages.length, (cell + 1) * per); p++) {
        const k = map.pages[p];
        const rank = (x: number) => (x === PageKind.Copied ? 3 : x === PageKind.New ? 2 : x === PageKind.Shared ? 1 : 0);
        if (rank(k) > rank(kind)) kind = k;
      }
      if (kind !== runKind) {
        flush(col);
        runStart = col;
        runKind = kind;
      }
      if (col === cols - 1 || cell === cells - 1) flush(col + 1);
    }
  }
  // Where the child's snapshot ends.
  const topCell = Math.ceil(map.snapshotPages / per);
  if (topCell < cells) {
    const x = (topCell % cols) * size;
    const y = Math.floor(topCell / cols) * size;
    parts.push(`<rect x="${x}" y="${y}" width="2" height="${size}" fill="#000"><title>top of the snapshot</title></rect>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}

function renderSvg(map: CowMap, _c: CycleStats, _o: CowMapOptions): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${mapSvg(map)}\n`;
}

function renderHtml(map: CowMap, c: CycleStats, o: CowMapOptions): string {
  const per = Math.max(1, Math.ceil(map.pages.length / 32768));
  const k = map.counts;
  const legend = [PageKind.Shared, PageKind.Copied, PageKind.New, PageKind.Absent].map((kind) => {
    const count = kind === PageKind.Shared ? k.shared : kind === PageKind.Copied ? k.copied : kind === PageKind.New ? k.new : k.absent;
    return `<li><span class="sw" style="background:${COLORS[kind]}"></span>${LABELS[kind]}: <b>${n0(count)}</b> pages (${kib(count * map.pageBytes)} KiB)</li>`;
  }).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>forkgc copy-on-write map, cycle ${c.id}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #222; max-width: 60em }
.sw { display: inline-block; width: 12px; height: 12px; margin-right: .5em; vertical-align: -1px }
ul { list-style: none; padding: 0 } svg { border: 1px solid #ccc; padding: 2px }
code { background: #f3f3f3; padding: 0 .2em }
</style></head><body>
<h1>The arena mid-cycle, as the kernel maps it</h1>
<p>Heap ${map.heapId}, cycle ${c.id}: the child (pid ${c.childPid}) was held ${o.hold} ms before marking; while it lived the
parent wrote to one record on each of ${n0(o.writes)} pages and allocated ${n0(o.allocate)} objects. The picture was taken then,
from the parent's <code>/proc/self/pagemap</code>: bit 63 (present) and bit 56 (mapped by this process alone), against which pages were present
just before the fork. One cell is ${per} page${per > 1 ? 's' : ''} of ${map.pageBytes} bytes, ${128 * per * map.pageBytes / 1024} KiB a row;
the black mark is the top of the child's snapshot (topGranule at the fork).</p>
<ul>
${legend}
</ul>
${mapSvg(map)}
<p>The child's own count, from its pagemap at the end of its life: <b>${c.cowBytes < 0 ? 'unavailable' : `${n0(c.cowBytes / map.pageBytes)} pages`}</b>
copied (CycleStats.cowBytes = ${c.cowBytes}). Fork ${n0(c.forkUs)} µs; ${n0(c.objectsMarked)} objects marked in ${ms(c.markMs)} ms;
${n0(c.objectsFreed)} objects freed; ${mib(c.bytesReturned)} MiB returned to the OS.</p>
<p>Generated by <code>forkgc cow-map</code> on ${new Date().toISOString()} (pid ${process.pid}, Node ${process.version}).</p>
</body></html>
`;
}

// ---- forkgc trace -------------------------------------------------------------

interface TraceCmdOptions { seconds: number; records: number; mode: 'fork' | 'stw'; inProcessMarkUs: number }

async function traceCommand(file: string, o: TraceCmdOptions): Promise<void> {
  // The file must be writable before the run, not found out after it.
  writeFileSync(file, '');
  const heap = new Heap({ mode: o.mode, maxHeap: '1GiB', minTriggerBytes: '8MiB', inProcessMarkUs: o.inProcessMarkUs });
  const rec = startTrace(heap);
  // The build, then the churn, on one bar counted in tenths of the run: building is the first tenth.
  const buildShare = 0.1;
  const progress = new Progress({ total: 100, unit: '%' });
  let cycles = 0;
  heap.on('cycle', () => { cycles++; });
  try {
    const Rec = heap.defineStruct('Record', { name: 'ref', next: 'ref', id: 'u32', score: 'f64' });
    const table = heap.root(heap.arrays.alloc(o.records));
    const make = (id: number): Ref => {
      const r = Rec.alloc({ id, score: id / 7 });
      Rec.set.name(r, heap.strings.alloc(`record-${id}`));
      return r;
    };
    for (let i = 0; i < o.records; i++) {
      heap.arrays.set(table.get(), i, make(i));
      if ((i & 0x3fff) === 0) {
        progress.update(Math.floor((100 * buildShare * i) / o.records), `building ${n0(o.records)} records, ${cycles} cycles`);
        await new Promise(setImmediate);  // cycles start from the event loop
      }
    }
    let seed = 7;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const start = Date.now();
    const end = start + o.seconds * 1000;
    let ops = 0;
    while (Date.now() < end) {
      const t = table.get();
      for (let k = 0; k < 2000; k++) {
        heap.arrays.set(t, Math.floor(rand() * o.records), make(ops++));
        let head = 0;
        for (let j = 0; j < 4; j++) head = Rec.alloc({ next: head, id: j });
      }
      const done = (Date.now() - start) / Math.max(1, end - start);
      progress.update(Math.floor(100 * (buildShare + (1 - buildShare) * done)),
        `churning ${((Date.now() - start) / 1000).toFixed(0)}/${o.seconds} s, ${cycles} cycles`);
      await new Promise(setImmediate);
    }
    progress.update(100, `last cycle, ${cycles} cycles`);
    await heap.collect().catch(() => undefined);
    table.release();
  } finally {
    progress.stop();
    await heap.close();
    const trace = rec.writeTo(file);
    const slices = trace.traceEvents.filter((e) => e.ph === 'X');
    const traced = slices.filter((e) => e.name.startsWith(TRACE_NAMES.cyclePrefix)).length;
    const pauses = slices.filter((e) => (e.cat ?? '').split(',').includes('pause'));
    const maxPause = Math.max(0, ...pauses.filter((e) => e.name !== TRACE_NAMES.sweepSlice).map((e) => e.dur ?? 0));
    console.log(`wrote ${file}: ${n0(trace.traceEvents.length)} events, ${traced} cycles, longest ${o.mode === 'fork' ? 'fork' : 'marking'} pause ${n0(maxPause)} µs`);
    console.log('open it in https://ui.perfetto.dev (Open trace file) or chrome://tracing (Load)');
  }
}

// ---- forkgc bench -------------------------------------------------------------

/** Where the benchmark suite's sources are: a clone of the repository has bench/; the npm package does not. */
function bench(args: string[]): Promise<void> {
  const root = packageRoot();
  const runner = path.join(root, 'dist', 'bench', 'run.js');
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!existsSync(path.join(root, 'bench', 'tsconfig.json')) || !existsSync(tsc)) {
    const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { repository?: { url?: string } };
    const repo = (manifest.repository?.url ?? '').replace(/^git\+/, '') || 'the forkgc repository';
    console.error('forkgc bench: the benchmark suite is not part of the npm package (it needs its sources, the ' +
      'development dependencies and, for the peers, ldc2 and libgc). Run it from a clone:\n' +
      `  git clone ${repo} && cd forkgc && npm ci && npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`);
    process.exitCode = 1;
    return Promise.resolve();
  }
  // A clone: compile the suite (and the library beside it) first, so it runs what the sources say.
  process.stderr.write('forkgc bench: compiling the benchmark suite (tsc -p bench/tsconfig.json)\n');
  const built = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'bench', 'tsconfig.json')], { stdio: 'inherit' });
  if (built.status !== 0 || !existsSync(runner)) {
    console.error(`forkgc bench: compiling the benchmark suite failed (${built.error?.message ?? `tsc exited ${built.status}`})`);
    process.exitCode = 1;
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [runner, ...args], { stdio: 'inherit' });
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      process.exitCode = code ?? (signal ? 128 + 15 : 1);
      resolve();
    });
    child.on('error', (e) => {
      console.error(`forkgc bench: could not run ${runner}: ${e.message}`);
      process.exitCode = 1;
      resolve();
    });
  });
}

// ---- forkgc pressure ----------------------------------------------------------

async function pressure(o: { seconds: number }): Promise<void> {
  const source = pressureSource();
  if (!source) {
    console.log('no memory pressure information here (PSI needs Linux 4.20+ with CONFIG_PSI, not booted with psi=0); ' +
      'watchMemoryPressure() would do nothing');
    return;
  }
  const show = () => {
    const r = readPressure(source);
    if (r) console.log(`${source}: some avg10=${r.someAvg10.toFixed(2)}% avg60=${r.someAvg60.toFixed(2)}% ` +
      `avg300=${r.someAvg300.toFixed(2)}%, stalled ${n0(r.someTotalUs / 1000)} ms in all; full avg10=${r.fullAvg10.toFixed(2)}%`);
  };
  show();
  const end = Date.now() + o.seconds * 1000;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, Math.min(1000, end - Date.now())));
    show();
  }
}

// ---- the program ----------------------------------------------------------------

/** The version in forkgc's own package.json (the one npm installed). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

export function program(): Command {
  const p = new Command('forkgc')
    .description('forkgc: a garbage-collected heap whose marking runs in a fork()ed child. See a cycle happen.')
    .version(packageVersion());

  p.command('demo')
    .description('run one cycle and narrate it with the real figures of this machine')
    .option('--records <n>', 'live records (2 objects each)', int(1), 200_000)
    .option('--garbage <n>', 'garbage records allocated after them (2 objects each)', int(0), 300_000)
    .option('--writes <pages>', 'distinct pages the parent writes to while the child marks', int(0), 256)
    .option('--allocate <n>', 'objects the parent allocates while the child marks (allocate black)', int(0), 1000)
    .option('--hold <ms>', 'the child waits this long before marking, so the parent\'s writes surely land while it lives ' +
      '(a testing hook; 0 = a natural cycle, whose child may finish before the parent has written anything)', int(0, 60_000), 100)
    .addOption(new Option('--mode <mode>', 'fork, or stw (the same marker, in-process)').choices(['fork', 'stw']).default('fork'))
    .option('--huge-pages', 'transparent huge pages on the arena (MADV_HUGEPAGE), as the library does by default', true)
    .option('--no-huge-pages', '4 KiB pages: the child\'s copy-on-write count is exact')
    .option('--kill-child', 'SIGKILL the child mid-cycle: the cycle aborts and frees nothing', false)
    .option('--second-heap', 'a second heap forks while the first one\'s child lives (nested forks, shared pages)', false)
    .action((opts: DemoOptions) => demo(opts));

  p.command('cow-map')
    .description('picture the arena mid-cycle: pages shared with the child, copied by the parent, new since the fork')
    .option('--out <file>', 'output: .html (default) or .svg', 'forkgc-cow-map.html')
    .option('--records <n>', 'live records', int(1), 200_000)
    .option('--garbage <n>', 'garbage records', int(0), 100_000)
    .option('--writes <pages>', 'distinct pages the parent writes to while the child lives', int(0), 512)
    .option('--allocate <n>', 'objects allocated while the child lives', int(0), 20_000)
    .option('--hold <ms>', 'how long the child waits before marking; the picture is taken meanwhile', int(1, 60_000), 500)
    .action((opts: CowMapOptions) => cowMap(opts));

  p.command('trace')
    .description('run a churning workload and write its cycles as a Perfetto / chrome://tracing trace')
    .argument('<file>', 'the trace file to write (JSON)')
    .option('--seconds <s>', 'how long to churn', num(0, 3600), 3)
    .option('--records <n>', 'live records', int(1), 200_000)
    .addOption(new Option('--mode <mode>', 'fork or stw').choices(['fork', 'stw']).default('fork'))
    .option('--in-process-mark-us <us>', 'fork mode marks a cycle in-process when it expects that mark to take at most this long ' +
      '(the heap option inProcessMarkUs); 0: every cycle forks', int(0, 1_000_000), 1000)
    .action((file: string, opts: TraceCmdOptions) => traceCommand(file, opts));

  p.command('bench')
    .description('run the benchmark suite from a clone of the repository (it compiles bench/ first); ' +
      'arguments are passed on (try: forkgc bench --help)')
    .argument('[args...]', 'arguments of the benchmark runner')
    .allowUnknownOption()
    .helpOption(false)
    .action((args: string[]) => bench(args));

  p.command('pressure')
    .description('show the memory pressure (PSI) a heap watching it would react to')
    .option('--seconds <s>', 'keep showing it this long', num(0, 3600), 0)
    .action((opts: { seconds: number }) => pressure(opts));

  return p;
}

function invokedDirectly(): boolean {
  // Through npm's bin link argv[1] is a symlink to this file.
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

const isMain = invokedDirectly();
if (isMain) {
  program().parseAsync(process.argv).catch((e: unknown) => {
    console.error(`forkgc: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
