// The parent's side of one marking child: the pipe it streams into, the
// watchdog that bounds it, killing and reaping it, and the ONE mapping from
// how a child ended to why its cycle aborts. Every path that learns how the
// child ended - the stream ending on the event loop, an allocation that
// waits for the child (finishMarkingSync), an abort that kills it - decides
// through childVerdict(), so the same child gives the same reason on each.
//
// The child's side (fork, the async-signal-safe marker run, _exit with a
// status from native/wire.h) is native/child.cc; docs/design.md, 'The child'.
import net from 'node:net';
import fs from 'node:fs';
import type { AbortReason } from '../api/errors.js';
import type { ChildEnd, NativeAddon } from '../platform/native.js';
import { CHUNK_BYTES, EXIT_HEAP_CORRUPT } from './stream.js';

/**
 * The buffer every read of a child's pipe goes into, on this thread: the
 * socket's, and the collector's own direct reads (a safepoint's, or an
 * allocation that waits for the child). A
 * socket left to allocate its own takes a new 64 KiB buffer for each read,
 * and on a machine where a page fault is dear the kernel's copy into it is
 * mostly faults on its fresh pages: 55-68% of the samples in the longest
 * mutator stalls of a full splay run (30-50 ms each, the main thread on its
 * CPU throughout) were page faults inside read(), 5-12% more in malloc
 * (docs/performance-log.md).
 * Reused, its pages stay mapped. One for all heaps on the thread: a read's
 * data is taken or copied before its callback (or the direct read's caller)
 * goes on, and no read starts while another's data is in use (libuv's
 * callbacks do not nest; code that runs inside a take, a failure's
 * listeners, runs after the data's last use).
 */
export const readBuffer = new Uint8Array(CHUNK_BYTES);

/** Why a cycle aborts, as the collector reports it. */
export interface Verdict {
  reason: AbortReason;
  message: string;
  /** The signal that killed the child, when one did. */
  signal?: number;
}

/**
 * How the child ended -> why the cycle aborts (undefined: it did not).
 *
 * | the stream              | the child               | verdict                        |
 * |-------------------------|-------------------------|--------------------------------|
 * | any                     | killed by a signal      | CHILD_SIGNALED                 |
 * | any                     | exit 71 (heap corrupt)  | HEAP_CORRUPT                   |
 * | any                     | exit other non-zero     | CHILD_EXIT                     |
 * | failed (`streamFailure`)| exit 0, or not reaped   | the stream's own reason        |
 * | complete and valid      | not reaped (`end` null) | WATCHDOG                       |
 * | complete and valid      | could not be reaped     | CHILD_EXIT                     |
 * | complete and valid      | exit 0                  | none: the cycle may sweep      |
 *
 * The exit status speaks first: a child that found the heap corrupt exits
 * before it writes a byte, so its stream is merely short.
 */
export function childVerdict(end: ChildEnd | null, streamFailure?: Verdict): Verdict | undefined {
  const why = streamFailure ? ` (${streamFailure.message})` : ' after its stream';
  if (end && end.state === 'signaled') return { reason: 'CHILD_SIGNALED', message: `the child died by signal ${end.signal}${why}`, signal: end.signal };
  if (end && end.state === 'exited' && end.code !== 0) {
    return { reason: exitReason(end.code), message: `the child exited with status ${end.code}${why}` };
  }
  if (streamFailure) return streamFailure;
  if (!end) return { reason: 'WATCHDOG', message: 'the child did not exit after its stream' };
  if (end.state === 'gone') return { reason: 'CHILD_EXIT', message: 'the child could not be reaped' };
  return undefined;
}

function exitReason(code: number): AbortReason {
  return code === EXIT_HEAP_CORRUPT ? 'HEAP_CORRUPT' : 'CHILD_EXIT';
}

/**
 * Children not reaped yet, for the process's (or worker's) 'exit': Node runs
 * the addon's environment cleanup hook (which reaps) only when the event loop
 * ends on its own, not on process.exit() or an uncaught exception, and a
 * child killed by PDEATHSIG then stays a zombie under a parent that does not
 * reap (found in review). 'exit' listeners run in both cases; this one kills
 * and reaps, bounded.
 */
const unreaped = new Set<ChildSession>();
let exitListening = false;
function watchExit(s: ChildSession): void {
  unreaped.add(s);
  if (exitListening) return;
  exitListening = true;
  process.on('exit', () => {
    for (const child of [...unreaped]) child.kill();
  });
}

/** One child in flight: its pid, its end of the pipe, its watchdog. */
export class ChildSession {
  socket: net.Socket | undefined;
  watchdog: NodeJS.Timeout | undefined;
  /**
   * When the watchdog is due (performance.now() ms), set when it is armed:
   * the paths that do not wait for the timer (a safepoint, an allocation at
   * maxHeap) hold the child to the same deadline, counted from the fork.
   * A monotonic clock, as the timer's: on the wall clock (Date.now()) a
   * clock step killed a healthy child or kept a hung one (found in review).
   */
  deadlineMs = Infinity;
  timeoutMs = 0;
  /** Whether the timer holds the event loop (someone awaits the cycle). */
  private keepAlive = false;
  private onTimeout: (() => void) | undefined;
  #reaped = false;
  get reaped(): boolean { return this.#reaped; }
  set reaped(yes: boolean) {
    this.#reaped = yes;
    if (yes) unreaped.delete(this);
  }
  /** The descriptor went to a socket (which closes it), or was closed. */
  private opened = false;

  constructor(private readonly addon: NativeAddon, readonly pid: number, readonly fd: number) {
    if (pid > 0) watchExit(this);
  }

  /**
   * Opens the pipe as a socket (unref'd unless someone awaits the cycle) and
   * arms the watchdog. Each read of the pipe goes to `onRead`, in a view of
   * one buffer that every read on this thread reuses (readBuffer): valid
   * only during the call, so whoever keeps the data copies it.
   */
  open(keepAlive: boolean, timeoutMs: number, onTimeout: () => void, onRead: (data: Uint8Array) => void): net.Socket {
    this.opened = true;
    this.addon.adoptChildPipe(this.pid);
    // (`onread` is read by the constructor; Node's documentation moved it
    // there from connect() in nodejs/node#54194, @types/node has not.)
    const options: net.SocketConstructorOpts & { onread: net.OnReadOpts } = {
      fd: this.fd, readable: true, writable: false,
      onread: {
        buffer: readBuffer,
        callback: (bytes, buffer) => {
          // (Nothing after closeChannel: the cycle is over.)
          if (this.socket === socket) onRead(buffer.subarray(0, bytes));
          return true;
        },
      },
    };
    const socket = new net.Socket(options);
    this.socket = socket;
    if (!keepAlive) socket.unref();
    this.timeoutMs = timeoutMs;
    this.deadlineMs = performance.now() + timeoutMs;
    this.keepAlive = keepAlive;
    this.onTimeout = onTimeout;
    this.rearm(timeoutMs);
    return socket;
  }

  /**
   * Sets the watchdog to fire in `ms` (replacing any earlier timer): past
   * the deadline, a late child is looked at again on a timer rather than
   * waited for (src/collector/collector.ts, judgeLate). No-op once the
   * channel is closed.
   */
  rearm(ms: number): void {
    if (!this.onTimeout) return;
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(this.onTimeout, Math.max(1, Math.ceil(ms)));
    if (!this.keepAlive) this.watchdog.unref();
  }

  /** Stops the watchdog and closes the pipe; no more data or end events. */
  closeChannel(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = undefined;
    this.onTimeout = undefined;
    if (!this.opened) {
      // Never wrapped in a socket (the cycle ended between the fork and
      // open(): a 'fork' listener closed the heap): the descriptor is ours.
      this.opened = true;
      this.addon.adoptChildPipe(this.pid);
      try { fs.closeSync(this.fd); } catch { /* closed already */ }
      return;
    }
    if (this.socket) {
      this.socket.removeAllListeners('end');
      this.socket.on('error', () => {});
      this.socket.destroy();
      this.socket = undefined;
    }
  }

  /** SIGKILL and reap (an abort): SIGKILL cannot be blocked, so the child is gone within a scheduler tick. */
  kill(): void {
    if (this.pid <= 0 || this.reaped) return;
    try { process.kill(this.pid, 'SIGKILL'); } catch { /* already gone */ }
    this.reaped = this.addon.waitChild(this.pid, 5000) !== null;
    // Still there after 5 s (uninterruptible sleep): reap it when it goes,
    // from the event loop, rather than leave a zombie for the process's life.
    if (!this.reaped) this.reapThen(() => true, () => {});
  }

  /** Waits (blocking, bounded) for the child to exit: null if it would not. */
  reapSync(timeoutMs: number): ChildEnd | null {
    const end = this.addon.waitChild(this.pid, Math.max(1, timeoutMs));
    if (end) this.reaped = true;
    return end;
  }

  /** Reaps the child if it has exited (waitpid WNOHANG): null if it is still running. Never waits. */
  reapNow(): ChildEnd | null {
    const end = this.addon.waitChild(this.pid, 0);
    if (end) this.reaped = true;
    return end;
  }

  /**
   * Reaps the child, polling without blocking the event loop (it has closed
   * its end of the pipe, so it is exiting); stops if `wanted()` turns false.
   * The watchdog still runs: a child that never exits is killed by it.
   */
  reapThen(wanted: () => boolean, then: (end: ChildEnd) => void): void {
    let delay = 0;
    const poll = () => {
      if (!wanted() || this.reaped) return;
      const end = this.addon.waitChild(this.pid, 0);
      if (end) {
        this.reaped = true;
        return then(end);
      }
      delay = Math.min(delay === 0 ? 1 : delay * 2, 50);
      setTimeout(poll, delay).unref();
    };
    poll();
  }
}
