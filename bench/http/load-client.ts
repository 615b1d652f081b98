/**
 * HTTP load generator for the http-cache workload: runs in its own process
 * (spawned by workloads/http-cache.ts), talks HTTP/1.1 keep-alive over raw
 * TCP sockets to 127.0.0.1 only, and prints one line `@@LOAD <json>`.
 *
 *   node dist/bench/http/load-client.js '{"port":1234,"loop":"open","rate":5000,...}'
 *
 * Two loops:
 *   - closed: `connections` sockets, each sends its next request as soon as
 *     the previous response has arrived; latency = response end - send time.
 *     Measures capacity; a stalled server simply gets fewer requests.
 *   - open: requests are due at fixed times t0 + i / rate, whatever the server
 *     does; a due request goes out on an idle socket, or waits in a queue for
 *     one. Latency = response end - INTENDED send time, so a server stall is
 *     charged to every request that should have been sent during it
 *     (no coordinated omission).
 *
 * Raw sockets rather than http.request: the client shares a 2-core machine with
 * the server, and node's http client costs several times more per request.
 * Responses are parsed just enough: status line, Content-Length, body.
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { LogHistogram, percentileTable, round } from '../lib/histogram.js';
import { mulberry32 } from '../lib/rng.js';

export interface LoadSpec {
  port: number;
  loop: 'closed' | 'open';
  connections: number;
  /** Open loop: requests per second. */
  rate: number;
  warmupMs: number;
  durationMs: number;
  /** Keys are drawn uniformly from [0, keySpace). */
  keySpace: number;
  seed: number;
}

export interface LoadResult {
  loop: 'closed' | 'open';
  rate: number | null;
  connections: number;
  durationMs: number;
  completed: number;
  errors: number;
  /** Completed requests per second over the measured window. */
  throughput: number;
  latencyUs: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** Open loop: the most requests waiting for a socket at once. */
  maxQueued: number;
  /** Open loop: requests due but not sent by the end (the server fell behind). */
  unsent: number;
  bytesReceived: number;
}

const CRLF2 = Buffer.from('\r\n\r\n');

class Conn {
  private buf: Buffer = Buffer.alloc(0);
  busy = false;
  /** Intended (open) or actual (closed) send time of the request in flight. */
  startedAt = 0;
  constructor(readonly socket: Socket, private readonly onResponse: (c: Conn, status: number, bytes: number) => void) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.data(d));
  }

  send(path: string, startedAt: number): void {
    this.busy = true;
    this.startedAt = startedAt;
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  }

  private data(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      const end = this.buf.indexOf(CRLF2);
      if (end < 0) return;
      const head = this.buf.toString('latin1', 0, end);
      const m = /content-length:\s*(\d+)/i.exec(head);
      const len = m ? Number(m[1]) : 0;
      const total = end + 4 + len;
      if (this.buf.length < total) return;
      const status = Number(head.slice(9, 12));
      this.buf = this.buf.subarray(total);
      this.busy = false;
      this.onResponse(this, status, total);
    }
  }
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const rnd = mulberry32(spec.seed);
  const nextPath = () => `/item/${Math.floor(rnd() * spec.keySpace)}`;
  const hist = new LogHistogram();
  let measureFrom = Infinity;
  let measureTo = Infinity;
  let completed = 0;
  let errors = 0;
  let bytes = 0;
  let maxQueued = 0;
  const queue: number[] = [];   // open loop: intended times of requests waiting for a socket
  let qHead = 0;
  const idle: Conn[] = [];
  let stopping = false;

  const onResponse = (c: Conn, status: number, n: number) => {
    const now = performance.now();
    if (c.startedAt >= measureFrom && c.startedAt < measureTo) {
      completed++;
      bytes += n;
      if (status !== 200) errors++;
      hist.record((now - c.startedAt) * 1e6);
    }
    if (stopping) return;
    if (spec.loop === 'closed') {
      c.send(nextPath(), performance.now());
    } else if (qHead < queue.length) {
      c.send(nextPath(), queue[qHead++]);
      if (qHead > 4096 && qHead * 2 > queue.length) { queue.splice(0, qHead); qHead = 0; }
    } else {
      idle.push(c);
    }
  };

  const conns: Conn[] = [];
  for (let i = 0; i < spec.connections; i++) {
    const socket = connect({ host: '127.0.0.1', port: spec.port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.on('error', () => { errors++; });
    conns.push(new Conn(socket, onResponse));
  }

  const t0 = performance.now();
  measureFrom = t0 + spec.warmupMs;
  measureTo = measureFrom + spec.durationMs;
  const endAt = measureTo;

  if (spec.loop === 'closed') {
    for (const c of conns) c.send(nextPath(), performance.now());
    await new Promise((r) => setTimeout(r, endAt - performance.now()));
  } else {
    idle.push(...conns);
    const interval = 1000 / spec.rate;
    let sent = 0;
    await new Promise<void>((resolve) => {
      const pump = () => {
        const now = performance.now();
        // Every request due by now: to an idle socket, else to the queue.
        for (;;) {
          const due = t0 + sent * interval;
          if (due > now || due >= endAt) break;
          sent++;
          const c = idle.pop();
          if (c) c.send(nextPath(), due);
          else queue.push(due);
        }
        if (queue.length - qHead > maxQueued) maxQueued = queue.length - qHead;
        if (now >= endAt) resolve();
        // A timer, not setImmediate: a spinning client would take the CPU the
        // server needs on a 2-core machine. Requests due meanwhile go out
        // together and are charged from their intended times.
        else setTimeout(pump, 1);
      };
      pump();
    });
  }
  stopping = true;
  // Let responses in flight within the window arrive (bounded).
  const drainUntil = performance.now() + 2000;
  while (conns.some((c) => c.busy) && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 5));
  // What never completed still counts, as at least the time it has waited.
  const now = performance.now();
  const unsent = queue.length - qHead;
  for (let i = qHead; i < queue.length; i++) {
    if (queue[i] >= measureFrom && queue[i] < measureTo) hist.record((now - queue[i]) * 1e6);
  }
  for (const c of conns) {
    if (c.busy && c.startedAt >= measureFrom && c.startedAt < measureTo) hist.record((now - c.startedAt) * 1e6);
    c.socket.destroy();
  }
  const ms = (v: number) => round(v / 1e6, 3);
  return {
    loop: spec.loop,
    rate: spec.loop === 'open' ? spec.rate : null,
    connections: spec.connections,
    durationMs: spec.durationMs,
    completed,
    errors,
    throughput: round((completed * 1000) / spec.durationMs, 1),
    latencyUs: percentileTable(hist, 1e-3),
    p50Ms: ms(hist.percentile(50)),
    p99Ms: ms(hist.percentile(99)),
    p999Ms: ms(hist.percentile(99.9)),
    maxMs: ms(hist.max),
    maxQueued,
    unsent,
    bytesReceived: bytes,
  };
}

// Run as a process: the spec as argv[2], the result on stdout.
if (process.argv[1]?.endsWith('load-client.js')) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LoadSpec;
  runLoad(spec).then(
    (r) => {
      process.stdout.write(`@@LOAD ${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (e) => {
      process.stdout.write(`@@LOAD ${JSON.stringify({ error: e instanceof Error ? e.message : String(e) })}\n`);
      process.exit(1);
    },
  );
}
