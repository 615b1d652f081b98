/**
 * The http-cache rows of a results file as a Markdown table (client-side
 * latency and throughput, the server's GC pauses and RSS).
 *
 *   node dist/bench/http/summary.js bench/results/latest.json
 */
import { readFileSync } from 'node:fs';

interface Row {
  workload: string;
  system: string;
  ok: boolean;
  error?: string;
  params: { capacity: number; loop: string; durationMs: number };
  [k: string]: unknown;
}

const file = process.argv[2];
if (!file) {
  console.error('usage: node dist/bench/http/summary.js RESULTS.json');
  process.exit(2);
}
const f = JSON.parse(readFileSync(file, 'utf8')) as { date: string; mode: string; results: Row[] };
const rows = f.results.filter((r) => r.workload === 'http-cache');
const n = (v: unknown, d = 1) => (typeof v === 'number' ? v.toFixed(d) : 'n/a');
const mib = (v: unknown) => (typeof v === 'number' ? (v / 2 ** 20).toFixed(0) : 'n/a');
console.log(`http-cache, ${f.mode} run of ${f.date}\n`);
console.log('| records | loop | system | offered req/s | throughput req/s | p50 ms | p99 ms | p99.9 ms | max ms | V8 GC max ms | V8 major GCs (total ms) | forkgc cycles | forkgc pause max ms | peak RSS MiB | ok |');
console.log('|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|');
for (const r of rows) {
  if (!r.ok) {
    console.log(`| ${r.params.capacity} | ${r.params.loop} | ${r.system} | | | | | | | | | | | | FAIL: ${r.error ?? ''} |`);
    continue;
  }
  const major = (r.v8GcByKind as Record<string, { count: number; totalMs: number }> | undefined)?.major;
  const isForkgc = r.system.startsWith('forkgc');
  console.log(`| ${r.params.capacity} | ${r.params.loop} | ${r.system} | ${r.offeredRate ?? '-'} | ${n(r.clientThroughput, 0)} | ` +
    `${n(r.clientP50Ms, 2)} | ${n(r.clientP99Ms, 2)} | ${n(r.clientP999Ms, 2)} | ${n(r.clientMaxMs, 1)} | ${n(r.v8GcMaxMs, 1)} | ` +
    `${major ? `${major.count} (${major.totalMs.toFixed(0)})` : '0'} | ${isForkgc ? r.cycles : '-'} | ` +
    `${isForkgc ? n(r.forkgcPauseMaxMs, 2) : '-'} | ${mib(r.peakRssBytes)} | ${r.verified === false ? 'unverified' : 'yes'} |`);
}
