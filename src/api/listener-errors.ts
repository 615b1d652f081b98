// Application code the heap calls back into - event listeners,
// diagnostics_channel subscribers, finalization callbacks, a fault-injection
// predicate - must never change a cycle: an exception thrown there is
// reported the way Node reports one from a diagnostics_channel subscriber
// (rethrown from process.nextTick, so it reaches 'uncaughtException' or ends
// the process as any uncaught error would), and the heap carries on with
// the cycle as if the callback had returned.
import type { EventEmitter } from 'node:events';

/** Rethrows `e` on the next tick, outside whatever the heap is doing. */
export function reportLater(e: unknown): void {
  process.nextTick(() => { throw e; });
}

/** Runs `fn`; an exception it throws is reported on the next tick instead. */
export function callSafely(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    reportLater(e);
  }
}

/**
 * emitter.emit(name, payload), except that every listener runs even when an
 * earlier one throws, and nothing a listener throws reaches the caller (each
 * exception is reported on the next tick). `once` listeners still remove
 * themselves (rawListeners gives their wrappers).
 */
export function emitSafely(emitter: Pick<EventEmitter, 'rawListeners'>, name: string, payload: unknown): void {
  const listeners = emitter.rawListeners(name);
  for (const l of listeners) callSafely(() => { Reflect.apply(l, emitter, [payload]); });
}
