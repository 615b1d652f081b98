// forkgc: a garbage-collected heap for Node.js whose marking runs in a real
// fork()ed child process. See README.md for the API and how a cycle works.
export { Heap, type HeapEvents } from './heap.js';
export type { HeapOptions, Mode, FaultKind, FaultInjection, PiscinaPool } from './options.js';
export { parseBytes } from './options.js';
export type { Ref, FieldKind, FieldSpec, FieldValue, StructType, StructValues } from './types.js';
export { RefArrays, ByteArrays, Strings } from './types.js';
export { RootHandle } from './roots.js';
export { HeapFinalizationRegistry } from './finalization.js';
export type { CycleStats, HeapStats, Trigger } from './stats.js';
export {
  ForkGcError, InvalidOptionError, TypeDefinitionError, InvalidReferenceError, WrongTypeError,
  StaleReferenceError, IndexOutOfBoundsError, FieldValueError, HeapClosedError, HeapExhaustedError,
  RootReleasedError, CycleAbortedError, UnsupportedPlatformError, NativeLoadError, type AbortReason,
} from './errors.js';
export { CHANNELS } from './events.js';
export type {
  CycleEventMap, CycleEventName, CycleStartEvent, ForkEvent, ChildDoneEvent, StreamEvent, MarkEvent,
  SweepStartEvent, SweepProgressEvent, FallbackEvent,
} from './events.js';
export { startTrace, TRACE_NAMES, type TraceRecorder, type TraceFile, type TraceEvent, type TraceOptions } from './trace.js';
export {
  watchCowBudget, CowBudget, COW_BUDGET_CHANNEL, CowMapper, PageKind, type CowBudgetEvent, type CowBudgetOptions,
  type CowMap,
} from './cow-budget.js';
export {
  watchMemoryPressure, PressureWatcher, pressureSource, readPressure, parsePressure, type PressureReading,
  type PressureOptions,
} from './pressure.js';
