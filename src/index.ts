// forkgc: a garbage-collected heap for Node.js whose marking runs in a real
// fork()ed child process. See README.md for the API and how a cycle works.
export { Heap, type HeapEvents } from './api/heap.js';
export type { HeapOptions, Mode, FaultKind, FaultInjection, PiscinaPool } from './api/options.js';
export { parseBytes } from './api/options.js';
export type { Ref, RefTo, RefType, FieldKind, FieldSpec, FieldValue, FieldInput, StructType, StructValues } from './api/types.js';
export { RefArrays, ByteArrays, Strings } from './api/types.js';
export { HeapMaps, type MapKey, type MapRef, type MapVisitor } from './collections/heap-maps.js';
export { RootHandle } from './api/roots.js';
export { HeapFinalizationRegistry } from './api/finalization.js';
export type { CycleStats, HeapStats, Trigger } from './api/stats.js';
export {
  ForkGcError, InvalidOptionError, TypeDefinitionError, InvalidReferenceError, WrongTypeError,
  StaleReferenceError, IndexOutOfBoundsError, FieldValueError, InvalidArgumentError, HeapClosedError, HeapExhaustedError,
  RootReleasedError, InvalidKeyError, MapModifiedError, CycleAbortedError, HeapCorruptError, UnsupportedPlatformError, NativeLoadError, type AbortReason,
} from './api/errors.js';
export { CHANNELS } from './api/events.js';
export type {
  CycleEventMap, CycleEventName, CycleStartEvent, ForkEvent, ChildDoneEvent, StreamEvent, MarkEvent,
  SweepStartEvent, SweepProgressEvent, FallbackEvent, StallEvent,
} from './api/events.js';
export type { StallKind, StallBreakdown, StallFigure } from './collector/stalls.js';
export { startTrace, TRACE_NAMES, type TraceRecorder, type TraceFile, type TraceEvent, type TraceOptions } from './tools/trace.js';
export {
  watchCowBudget, CowBudget, COW_BUDGET_CHANNEL, CowMapper, PageKind, type CowBudgetEvent, type CowBudgetOptions,
  type CowMap,
} from './tools/cow-budget.js';
export {
  watchMemoryPressure, PressureWatcher, pressureSource, readPressure, parsePressure, type PressureReading,
  type PressureOptions,
} from './tools/pressure.js';
