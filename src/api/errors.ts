// Every error forkgc throws is a ForkGcError with a stable string `code`.
// The README lists them all; test/errors.test.ts provokes each one.

/** A value shown in a message without calling any of its code (a BigInt, a Symbol, a Proxy). */
export function describe(value: unknown): string {
  switch (typeof value) {
    case 'string': return JSON.stringify(value);
    case 'number': case 'boolean': case 'undefined': return String(value);
    case 'bigint': return `${String(value)}n`;
    case 'symbol': return 'a symbol';
    case 'function': return 'a function';
    default: return value === null ? 'null' : 'an object';
  }
}

export class ForkGcError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** An option passed to `new Heap()` is missing its form or out of range. */
export class InvalidOptionError extends ForkGcError {
  constructor(message: string) { super('ERR_INVALID_OPTION', message); }
}

/** A struct declaration is malformed (empty or duplicate name, unknown field kind...). */
export class TypeDefinitionError extends ForkGcError {
  constructor(message: string) { super('ERR_TYPE_DEFINITION', message); }
}

/** A value used as a reference is not one: not a number, out of the arena, not an object start, or null where an object is needed. */
export class InvalidReferenceError extends ForkGcError {
  constructor(message: string) { super('ERR_INVALID_REF', message); }
}

/** A typed accessor was given an object of another type. */
export class WrongTypeError extends ForkGcError {
  constructor(message: string) { super('ERR_WRONG_TYPE', message); }
}

/** The object was freed by a cycle (checked mode: or the reference was held across a cycle). */
export class StaleReferenceError extends ForkGcError {
  constructor(message: string) { super('ERR_STALE_REF', message); }
}

/** An array, byte-array or string index is outside the object. */
export class IndexOutOfBoundsError extends ForkGcError {
  constructor(message: string) { super('ERR_INDEX_OUT_OF_BOUNDS', message); }
}

/**
 * An argument is not of the kind the method takes: a callback that is not a
 * function, an unregister token that is not an object, an index that is not
 * a number (a BigInt, a Symbol, an object).
 */
export class InvalidArgumentError extends ForkGcError {
  constructor(message: string) { super('ERR_INVALID_ARGUMENT', message); }
}

/** A value of the wrong kind or range was written to a field or element. */
export class FieldValueError extends ForkGcError {
  constructor(message: string) { super('ERR_FIELD_VALUE', message); }
}

/** The heap was closed. */
export class HeapClosedError extends ForkGcError {
  constructor(message = 'the heap is closed') { super('ERR_HEAP_CLOSED', message); }
}

/** No memory is left within maxHeap, even after waiting for the pending cycle. */
export class HeapExhaustedError extends ForkGcError {
  constructor(message: string) { super('ERR_HEAP_EXHAUSTED', message); }
}

/** A root handle was used after release(). */
export class RootReleasedError extends ForkGcError {
  constructor(message = 'the root handle was released') { super('ERR_ROOT_RELEASED', message); }
}

/**
 * The heap holds a reference that is not an object (memory written behind
 * forkgc's back): found by the in-process marker of the weak read barrier.
 */
export class HeapCorruptError extends ForkGcError {
  constructor(message: string) { super('ERR_HEAP_CORRUPT', message); }
}

/** A heap map key is not a string or a number, or is a string with a lone surrogate (no UTF-8 form). */
export class InvalidKeyError extends ForkGcError {
  constructor(message: string) { super('ERR_INVALID_KEY', message); }
}

/** A heap map was changed while it was being iterated (other than by deleting the entry being visited). */
export class MapModifiedError extends ForkGcError {
  constructor(message: string) { super('ERR_MAP_MODIFIED', message); }
}

/**
 * Why a cycle was aborted (docs/design.md, invariant 3: an aborted cycle
 * frees nothing; SWEEP_FAILED is the one abort after freeing began). A
 * failed fork() is not an abort: the heap collects stop-the-world instead
 * and says so once ('fallback' event, FORKGC_FALLBACK warning).
 */
export type AbortReason =
  | 'CHILD_SIGNALED'   // the child died by a signal
  | 'CHILD_EXIT'       // the child exited with a non-zero status
  | 'STREAM_SHORT'     // the stream ended before its trailer
  | 'BAD_MAGIC'        // the header or trailer does not start with its magic number
  | 'BAD_VERSION'      // the wire version or header size is not this build's
  | 'BAD_GEOMETRY'     // the header's heap geometry is not the heap's at fork
  | 'BAD_FRAMING'      // a chunk head out of sequence, or bytes after the trailer
  | 'BAD_CHECKSUM'     // the header, a chunk or the trailer failed its checksum
  | 'WRONG_CYCLE'      // the stream belongs to another cycle
  | 'ZOMBIE_MARK'      // the bitmap marks a granule that holds no object
  | 'COUNT_MISMATCH'   // the trailer's object count disagrees with the bitmap
  | 'WATCHDOG'         // the child took longer than childTimeoutMs and was killed
  | 'HEAP_CORRUPT'     // the marker met a reference that is not an object
  | 'CLOSED'           // the heap was closed while the cycle ran
  | 'SWEEP_FAILED'     // a sweeper thread failed; spans swept before it stay freed
  | 'INTERNAL';        // a bug in forkgc while reading the stream (the message has it)

/**
 * A cycle was aborted: nothing was freed, except with SWEEP_FAILED (the
 * spans swept before the failure stay swept) and with CLOSED during the
 * sweep (the heap is gone). `reason` says why.
 */
export class CycleAbortedError extends ForkGcError {
  readonly reason: AbortReason;
  readonly cycleId: number;
  constructor(reason: AbortReason, cycleId: number, message: string, duringSweep = false) {
    const outcome = reason === 'SWEEP_FAILED'
      ? 'the spans swept before the failure stay freed; the rest were left unswept, garbage and all'
      : duringSweep ? 'what the sweep had freed before it stays freed, and the heap is gone' : 'nothing was freed';
    super('ERR_CYCLE_ABORTED', `cycle ${cycleId} aborted (${reason}): ${message}; ${outcome}`);
    this.reason = reason;
    this.cycleId = cycleId;
  }
}

/** forkgc needs Linux (fork, copy-on-write, madvise). */
export class UnsupportedPlatformError extends ForkGcError {
  constructor(message: string) { super('ERR_UNSUPPORTED_PLATFORM', message); }
}

/** The native addon could not be loaded. */
export class NativeLoadError extends ForkGcError {
  constructor(message: string) { super('ERR_NATIVE_LOAD', message); }
}
