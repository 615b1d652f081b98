// The phases of a cycle, as events. Each is published on a
// node:diagnostics_channel channel (named below) and emitted on the heap
// (heap.on(name, ...)), with the same payload. Times are performance.now()
// milliseconds, so they line up with the rest of the process's timeline.
import dc from 'node:diagnostics_channel';
import type { CycleAbortedError } from './errors.js';
import type { CycleStats, Trigger } from './stats.js';

export interface CycleStartEvent {
  heapId: number; cycleId: number; mode: 'fork' | 'stw'; trigger: Trigger;
  heapBytes: number; liveBytes: number; topGranule: number; timeMs: number;
}
export interface ForkEvent {
  heapId: number; cycleId: number; pid: number; pauseUs: number; forkUs: number;
  /** When the fork() call began, the start of the child's life (its childMs counts from here), on timeMs's clock. */
  childStartMs: number;
  timeMs: number;
}
/** The child's trailer arrived and validated: its own figures. */
export interface ChildDoneEvent {
  heapId: number; cycleId: number; pid: number; markMs: number; childMs: number; objectsMarked: number;
  bytesMarked: number; childMaxRssKb: number; cowBytes: number; timeMs: number;
}
/** The stream validated and the child exited 0: the cycle can no longer abort. */
export interface StreamEvent {
  heapId: number; cycleId: number; pid: number; bitmapBytes: number; streamBytes: number;
  firstByteMs: number; timeMs: number;
}
export interface MarkEvent {
  heapId: number; cycleId: number; markMs: number; objectsMarked: number; bytesMarked: number; timeMs: number;
}
export interface SweepStartEvent { heapId: number; cycleId: number; spans: number; timeMs: number }
/** A slice of sweeping by one thread. */
export interface SweepProgressEvent {
  heapId: number; cycleId: number; thread: string; spans: number; freedObjects: number; freedBytes: number;
  startMs: number; endMs: number;
}
export interface FallbackEvent { heapId: number; reason: string; timeMs: number }
/** A wait of the main thread on the collector (src/collector/stalls.ts); published only while someone listens. */
export interface StallEvent { heapId: number; cycleId: number; kind: import('../collector/stalls.js').StallKind; startMs: number; endMs: number }

export interface CycleEventMap {
  cycleStart: CycleStartEvent;
  fork: ForkEvent;
  childDone: ChildDoneEvent;
  stream: StreamEvent;
  /** Stop-the-world marking finished (stw mode, or a fallback cycle). */
  mark: MarkEvent;
  sweepStart: SweepStartEvent;
  sweepProgress: SweepProgressEvent;
  /** The sweep finished: the cycle's figures (same as the 'cycle' event). */
  sweepEnd: CycleStats;
  abort: CycleAbortedError;
  fallback: FallbackEvent;
  /** Sweeper threads could not start; the heap sweeps on the main thread (once per heap). */
  sweeperFallback: FallbackEvent;
  stall: StallEvent;
}

export type CycleEventName = keyof CycleEventMap;

/** diagnostics_channel names, one per event. */
export const CHANNELS: { readonly [K in CycleEventName]: string } = {
  cycleStart: 'forkgc:cycle:start',
  fork: 'forkgc:cycle:fork',
  childDone: 'forkgc:cycle:child-done',
  stream: 'forkgc:cycle:stream',
  mark: 'forkgc:cycle:mark',
  sweepStart: 'forkgc:cycle:sweep-start',
  sweepProgress: 'forkgc:cycle:sweep-progress',
  sweepEnd: 'forkgc:cycle:sweep-end',
  abort: 'forkgc:cycle:abort',
  fallback: 'forkgc:cycle:fallback',
  sweeperFallback: 'forkgc:sweeper:fallback',
  stall: 'forkgc:cycle:stall',
};

/** Whether anyone listens on a channel (a cheap check before building a payload). */
export function hasSubscribers(name: CycleEventName): boolean {
  return channels[name].hasSubscribers;
}

const channels = Object.fromEntries(
  Object.entries(CHANNELS).map(([k, name]) => [k, dc.channel(name)]),
) as { [K in CycleEventName]: dc.Channel };

export function publish<K extends CycleEventName>(name: K, payload: CycleEventMap[K]): void {
  const ch = channels[name];
  if (ch.hasSubscribers) ch.publish(payload);
}
