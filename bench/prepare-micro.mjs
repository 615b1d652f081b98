// Micro-benchmark of the allocator's preparers (src/memory/allocator.ts,
// PREPARE_FREED): making the freed slots of a NEEDZERO bitmap word ready
// (each header's next generation, a zero body), as prepareWord does when a
// word of a swept span is cached. The compiled preparer of a slot size
// (compilePrepareFreed) against the generic one (prepareFreedGeneric), in
// one process, the two alternating round by round so that the machine's
// drift falls on both alike. Memory is cache-cold: 128 MiB of slots walked
// once per round, as a heap far larger than the cache is between cycles.
//
//   node bench/prepare-micro.mjs [dist] [rounds]
//
// Cases per slot size (16, 32, 48, 64 bytes): `run` (every slot start of the
// word free: a span whose objects all died) and `scattered` (every other
// slot start of the word free, a few more in some words: survivors between
// the dead). Prints ns per slot, the minimum and median over the rounds.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = path.resolve(process.argv[2] ?? 'dist');
const rounds = Number(process.argv[3] ?? 7);
const { compilePrepareFreed, prepareFreedGeneric } =
  await import(pathToFileURL(path.join(dist, 'src/memory/allocator.js')).href);

const BYTES = 128 * 1024 * 1024;
const u32 = new Uint32Array(BYTES / 4);
const words = BYTES / 4 / 128;  // bitmap words (32 granules of 16 bytes each)

function reset(slotWords) {
  for (let h = 0; h < u32.length; h += slotWords) {
    u32[h] = 17 | (5 << 16);  // a freed object's header: typeId 17, generation 5
    for (let i = 1; i < slotWords; i++) u32[h + i] = 0xdeadbeef;
  }
}
function slotStarts(granules) {
  let m = 0;
  for (let i = 0; i < 32; i += granules) m |= 1 << i;
  return m;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

for (const slotBytes of [16, 32, 48, 64]) {
  const slotWords = slotBytes / 4;
  const starts = slotStarts(slotBytes / 16);
  // A slot straddling the word's end (48 bytes) has its start in this word: the masks hold starts only.
  const cases = {
    run: () => starts,
    scattered: (w) => starts & ((w & 3) === 0 ? 0x5b5b5b5b : 0x55555555),
  };
  const compiled = compilePrepareFreed(slotWords);
  const generic = (a, w, free, base) => prepareFreedGeneric(a, w, free, base, slotWords);
  for (const [name, freeOf] of Object.entries(cases)) {
    const times = { compiled: [], generic: [] };
    for (let r = 0; r < rounds; r++) {
      for (const [which, f] of [['generic', generic], ['compiled', compiled]]) {
        reset(slotWords);
        let slots = 0;
        let sink = 0;
        const t = process.hrtime.bigint();
        for (let w = 0; w < words; w++) {
          const free = freeOf(w);
          sink |= f(u32, w, free, 3);
          slots += popcount(free);
        }
        const ns = Number(process.hrtime.bigint() - t);
        if (sink > 0xffff) throw new Error('unreachable');
        times[which].push(ns / slots);
      }
    }
    const fmt = (xs) => `min ${Math.min(...xs).toFixed(1)} med ${median(xs).toFixed(1)}`;
    console.log(`${String(slotBytes).padStart(2)} B ${name.padEnd(9)}  generic ${fmt(times.generic)}  compiled ${fmt(times.compiled)} ns/slot`);
  }
}

function popcount(x) {
  let n = 0;
  for (; x !== 0; x &= x - 1) n++;
  return n;
}
