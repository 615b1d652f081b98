// N-API bindings: unpack the arguments, call the mechanism (arena.cc,
// marker.cc, child.cc, child_registry.cc), pack the result. No logic here.
//
// Arguments: every function unpacks through Args below, so every check is
// the same one: a missing or mistyped argument, or an unknown heap id, is a
// TypeError "<function>: bad arguments" (a bug in src/, never user input).
//
// Results, one convention:
//   success                 the value itself: a number, a boolean, null, or
//                           an object of named fields (views, outcomes)
//   a platform failure the  an object with `errno` and `message` (strerror),
//   caller must handle      which src/ turns into a typed error or a fallback
//                           (createHeap: InvalidOptionError; forkCycle:
//                           stop-the-world); numbers that are -errno or errno
//                           where a count or 0 is the success (readBlocking,
//                           releaseArena)
#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include <napi.h>

#include <mutex>
#include <string>

#include "arena.h"
#include "child.h"
#include "child_registry.h"
#include "fork_exclusion.h"
#include "growth_prefault.h"
#include "huge_page_restore.h"
#include "layout.h"
#include "marker.h"
#include "stage_marks.h"
#include "string_encode.h"
#include "wire.h"

namespace forkgc {
namespace {

// Unpacks a call's arguments; the first bad one makes ok() false.
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* name, size_t count)
      : info_(info), name_(name), ok_(info.Length() >= count) {}

  bool ok() const { return ok_; }
  Napi::Env env() const { return info_.Env(); }
  size_t length() const { return info_.Length(); }

  // The TypeError for a bad call; returns undefined for the caller to return.
  Napi::Value fail() const {
    std::string message = std::string(name_) + ": bad arguments";
    Napi::TypeError::New(info_.Env(), message).ThrowAsJavaScriptException();
    return info_.Env().Undefined();
  }

  double number(size_t i) { return isNumber(i) ? info_[i].As<Napi::Number>().DoubleValue() : 0; }
  int32_t i32(size_t i) { return isNumber(i) ? info_[i].As<Napi::Number>().Int32Value() : 0; }
  uint32_t u32(size_t i) { return isNumber(i) ? info_[i].As<Napi::Number>().Uint32Value() : 0; }
  int64_t i64(size_t i) { return isNumber(i) ? info_[i].As<Napi::Number>().Int64Value() : 0; }
  bool boolean(size_t i) {
    if (i >= info_.Length() || !info_[i].IsBoolean()) return bad();
    return info_[i].As<Napi::Boolean>().Value();
  }
  Napi::Object object(size_t i) {
    if (i >= info_.Length() || !info_[i].IsObject()) {
      bad();
      return Napi::Object::New(info_.Env());
    }
    return info_[i].As<Napi::Object>();
  }
  // A heap by id; nullptr (and not ok) if there is none.
  HeapMemory* heap(size_t i) {
    HeapMemory* h = isNumber(i) ? lookupHeapMemory(info_[i].As<Napi::Number>().Int32Value()) : nullptr;
    if (!h) bad();
    return h;
  }
  // Whether argument i is present and a number (no error if not: optional).
  bool has(size_t i) const { return i < info_.Length() && info_[i].IsNumber(); }
  // A typed array of element type `type` (As<T>() checks nothing: a
  // Uint8Array taken for a Uint32Array would have its byte count read as a
  // word count, 4x past its end; found in review: a segfault).
  template <typename T>
  T typedArray(size_t i, napi_typedarray_type type) {
    if (i >= info_.Length() || !info_[i].IsTypedArray() ||
        info_[i].As<Napi::TypedArray>().TypedArrayType() != type) {
      bad();
      return T();
    }
    return info_[i].As<T>();
  }

 private:
  bool isNumber(size_t i) {
    if (i < info_.Length() && info_[i].IsNumber()) return true;
    bad();
    return false;
  }
  bool bad() {
    ok_ = false;
    return false;
  }
  const Napi::CallbackInfo& info_;
  const char* name_;
  bool ok_;
};

// The platform-failure result: { errno, message }.
Napi::Object errnoResult(Napi::Env env, int error) {
  Napi::Object r = Napi::Object::New(env);
  r["errno"] = error;
  r["message"] = error ? strerror(error) : "";
  return r;
}

Napi::ArrayBuffer view(Napi::Env env, const Region& r) {
  // The memory belongs to the heap, not to the ArrayBuffer: no finalizer
  // frees it. The owner detaches every view before the mappings go.
  return Napi::ArrayBuffer::New(env, r.base, r.bytes, [](Napi::Env, void*) {});
}

Napi::Object views(Napi::Env env, HeapMemory* h) {
  Napi::Object o = Napi::Object::New(env);
  o["id"] = h->id;
  // Where the arena is in this process, for /proc/self/pagemap readers.
  o["arenaAddress"] = Napi::BigInt::New(env, uint64_t(reinterpret_cast<uintptr_t>(h->arena.base)));
  o["arena"] = view(env, h->arena);
  o["allocBits"] = view(env, h->allocBits);
  o["markBits"] = view(env, h->markBits);
  o["spans"] = view(env, h->spans);
  o["descriptors"] = view(env, h->descriptors);
  o["roots"] = view(env, h->roots);
  o["hugePages"] = h->hugePages;
  o["wipeOnFork"] = h->wipeOnFork;
  return o;
}

void detachViews(Napi::Object o) {
  for (const char* name : {"arena", "allocBits", "markBits", "spans", "descriptors", "roots"}) {
    Napi::Value v = o.Get(name);
    if (v.IsArrayBuffer()) {
      Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
      if (!ab.IsDetached()) ab.Detach();
    }
  }
}

// The owner's reference, dropped by destroyHeap (close(), or the finalizer
// of a heap dropped without it); or, when the owner's environment ends
// first (a worker thread that ends without closing its heap, where no
// finalizer runs), by this cleanup hook: the mappings and the restore
// thread would otherwise stay for the process's life.
void destroyOwnedHeap(void* arg) { destroyHeapMemory(static_cast<HeapMemory*>(arg)); }

// The most mark-stack entries or roots a heap may have (src/api/options.ts: 2^28).
constexpr uint32_t kMaxCountEntries = uint32_t(1) << 28;

// createHeap(arenaBytes, hugePages, markStackEntries, maxRoots)
Napi::Value CreateHeap(const Napi::CallbackInfo& info) {
  Args a(info, "createHeap", 4);
  HeapOptions o;
  o.arenaBytes = uint64_t(a.i64(0));
  o.hugePages = a.boolean(1);
  o.markStackEntries = a.u32(2);
  o.maxRoots = a.u32(3);
  // The counts are bounded as src/api/options.ts bounds them: a roots
  // region over 4 GiB cannot be viewed (node-addon-api then freed its data
  // twice: an abort, in review), and a mark stack of 2^30 entries or more
  // read as 0 entries through HeapMemory's u32 count.
  if (!a.ok() || o.arenaBytes == 0 || o.arenaBytes > kMaxArenaBytes || o.markStackEntries == 0 ||
      o.markStackEntries > kMaxCountEntries || o.maxRoots == 0 || o.maxRoots > kMaxCountEntries)
    return a.fail();
  HeapMemory* h = createHeapMemory(o);
  if (!h) return errnoResult(a.env(), errno);
  openPagemap();
  napi_add_env_cleanup_hook(a.env(), destroyOwnedHeap, h);
  return views(a.env(), h);
}

// One worker thread's reference to a heap. Dropped by detachHeap, or by the
// environment's cleanup hook when the thread ends without detaching, so the
// mappings never outlive the last thread that can touch them, nor stay
// forever because a thread died.
struct Attachment {
  HeapMemory* heap;
  napi_env env;
};

void dropAttachment(void* arg) {
  Attachment* a = static_cast<Attachment*>(arg);
  detachHeapMemory(a->heap);
  delete a;
}

// attachHeap(id) -> views | null: a worker thread's way into a heap. Views
// are expensive to make for a large arena (V8 accounts an external buffer's
// length as allocated memory and collects accordingly), so a thread attaches
// once per heap and keeps the views (src/memory/sweep-worker.ts).
Napi::Value AttachHeap(const Napi::CallbackInfo& info) {
  Args args(info, "attachHeap", 1);
  int32_t id = args.i32(0);
  if (!args.ok()) return args.fail();
  Napi::Env env = args.env();
  HeapMemory* h = attachHeapMemory(id);
  if (!h) return env.Null();
  Attachment* a = new Attachment{h, env};
  napi_add_env_cleanup_hook(env, dropAttachment, a);
  Napi::Object o = views(env, h);
  o["attachment"] = Napi::External<Attachment>::New(env, a);
  return o;
}

// detachHeap(views): detaches the views and drops a worker's attachment.
Napi::Value DetachHeap(const Napi::CallbackInfo& info) {
  Args args(info, "detachHeap", 1);
  Napi::Object o = args.object(0);
  if (!args.ok()) return args.fail();
  Napi::Env env = args.env();
  Napi::Value handle = o.Get("attachment");
  if (!handle.IsExternal()) return args.fail();
  Attachment* a = handle.As<Napi::External<Attachment>>().Data();
  if (!a) return env.Undefined();
  o.Set("attachment", env.Null());
  // The owner may have destroyed the heap meanwhile: the mappings are still
  // there (this attachment holds them) until this last reference goes.
  detachViews(o);
  napi_remove_env_cleanup_hook(env, dropAttachment, a);
  dropAttachment(a);
  return env.Undefined();
}

// heapDestroyed(id): whether the owner has destroyed the heap (a thread's
// cached attachment should then be dropped).
Napi::Value HeapDestroyed(const Napi::CallbackInfo& info) {
  Args args(info, "heapDestroyed", 1);
  int32_t id = args.i32(0);
  if (!args.ok()) return args.fail();
  return Napi::Boolean::New(args.env(), lookupHeapMemory(id) == nullptr);
}

// heapAttachments(id) -> the threads holding views of a live heap (its owner's
// and each sweeper thread's, attachHeap), or 0 once it is destroyed. For tests
// and diagnostics: a sweeper thread of the heap's own pool attaches as it
// boots (src/memory/sweep-worker.ts), not at its first sweep.
Napi::Value HeapAttachments(const Napi::CallbackInfo& info) {
  Args args(info, "heapAttachments", 1);
  int32_t id = args.i32(0);
  if (!args.ok()) return args.fail();
  HeapMemory* h = lookupHeapMemory(id);
  return Napi::Number::New(args.env(), h ? h->attachments.load() : 0);
}

// destroyHeap(views): detaches the owner's views and drops its reference.
Napi::Value DestroyHeap(const Napi::CallbackInfo& info) {
  Args args(info, "destroyHeap", 1);
  Napi::Object o = args.object(0);
  if (!args.ok() || !o.Get("id").IsNumber()) return args.fail();
  HeapMemory* h = lookupHeapMemory(o.Get("id").As<Napi::Number>().Int32Value());
  // Only the views object createHeap returned for this heap (its arena
  // buffer over the heap's arena): given another object with the same id,
  // the mappings went from under the owner's views (a segfault, in review).
  if (h) {
    Napi::Value arena = o.Get("arena");
    if (!arena.IsArrayBuffer() || arena.As<Napi::ArrayBuffer>().Data() != h->arena.base) return args.fail();
  }
  detachViews(o);
  if (h) {
    napi_remove_env_cleanup_hook(args.env(), destroyOwnedHeap, h);
    destroyHeapMemory(h);
  }
  return args.env().Undefined();
}

// forkCycle(id, cycleId, topGranule, rootCount, fault, faultArg[, selective])
Napi::Value ForkCycle(const Napi::CallbackInfo& info) {
  Args a(info, "forkCycle", 6);
  ForkRequest req;
  req.heap = a.heap(0);
  req.cycleId = a.u32(1);
  req.topGranule = a.u32(2);
  req.rootCount = a.u32(3);
  req.fault = a.i32(4);
  req.faultArg = a.i32(5);
  req.selective = a.length() > 6 && a.boolean(6);
  if (!a.ok() || req.topGranule > req.heap->arenaGranules() || req.rootCount > req.heap->rootSlots()) return a.fail();
  ForkResult r = startForkCycle(req);
  if (r.pid > 0) watchChild(a.env(), r.pid, r.readFd, !r.selective);
  // Success and failure in one shape: pid < 0 means errno says why.
  Napi::Object o = errnoResult(a.env(), r.error);
  o["pid"] = r.pid;
  o["fd"] = r.readFd;
  o["forkNs"] = double(r.forkNs);
  o["forkStartNs"] = double(r.forkStartNs);  // a double: to the ns for 104 days of uptime, a few ns off after
  o["cpuNs"] = double(r.cpuNs);
  o["selective"] = r.selective;
  o["prepareNs"] = double(r.prepareNs);
  o["readMapsNs"] = double(r.readMapsNs);
  o["adviseNs"] = double(r.adviseNs);
  o["restoreNs"] = double(r.restoreNs);
  o["mappings"] = r.mappings;
  o["excludedMappings"] = r.excludedMappings;
  o["madviseCalls"] = r.madviseCalls;
  o["mapsCached"] = r.mapsCached;
  o["excludedBytes"] = double(r.excludedBytes);
  return o;
}

// markInProcess(id, topGranule, rootCount[, granule]): the stop-the-world
// mark from the root table; or, given a granule, from that object alone into
// the parent's bitmap as it is (the weak-read barrier, src/api/weak.ts).
Napi::Value MarkInProcess(const Napi::CallbackInfo& info) {
  Args a(info, "markInProcess", 3);
  HeapMemory* h = a.heap(0);
  uint32_t top = a.u32(1);
  uint32_t rootCount = a.u32(2);
  if (!a.ok() || top > h->arenaGranules() || rootCount > h->rootSlots()) return a.fail();
  Napi::Env env = a.env();
  MarkInput in;
  in.arena = h->arena.base;
  in.topGranule = top;
  in.allocBits = reinterpret_cast<const uint32_t*>(h->allocBits.base);
  in.markBits = reinterpret_cast<uint32_t*>(h->markBits.base);
  in.descriptors = reinterpret_cast<const uint32_t*>(h->descriptors.base);
  in.roots = reinterpret_cast<const uint32_t*>(h->roots.base);
  in.rootCount = rootCount;
  uint32_t single = 0;
  if (a.has(3)) {
    single = a.u32(3);
    in.roots = &single;
    in.rootCount = 1;
  }
  in.stack = reinterpret_cast<uint32_t*>(h->markStack.base);
  in.stackCapacity = h->markStackEntries();
  MarkResult r;
  markHeap(in, r);
  Napi::Object o = Napi::Object::New(env);
  o["objects"] = double(r.objects);
  o["bytes"] = double(r.bytes);
  o["ns"] = double(r.ns);
  o["stackHighWater"] = r.stackHighWater;
  o["overflowRescans"] = r.overflowRescans;
  o["status"] = r.status;
  o["badRef"] = r.badRef;
  return o;
}

// adoptChildPipe(pid): the JS side owns the child's pipe from now on
// (child_registry.h): the environment's cleanup hook no longer closes it.
Napi::Value AdoptChildPipe(const Napi::CallbackInfo& info) {
  Args a(info, "adoptChildPipe", 1);
  pid_t pid = a.i32(0);
  if (!a.ok() || pid <= 0) return a.fail();
  adoptChildPipe(pid);
  return a.env().Undefined();
}

// waitChild(pid, timeoutMs) -> null while it runs, else how it ended
// (child_registry.cc waits).
Napi::Value WaitChild(const Napi::CallbackInfo& info) {
  Args a(info, "waitChild", 2);
  pid_t pid = a.i32(0);
  double timeoutMs = a.number(1);
  if (!a.ok() || pid <= 0) return a.fail();
  Napi::Env env = a.env();
  ChildEnd end = waitChildFor(env, pid, timeoutMs);
  if (end.state == ChildEnd::kRunning) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  switch (end.state) {
    case ChildEnd::kGone:
      o["state"] = "gone";  // already reaped, or never ours
      o["errno"] = end.error;
      break;
    case ChildEnd::kExited:
      o["state"] = "exited";
      o["code"] = end.code;
      break;
    default:
      o["state"] = "signaled";
      o["signal"] = end.signal;
  }
  return o;
}

// readBlocking(fd, Uint8Array, timeoutMs) -> bytes read, 0 at end of
// stream, -1 on timeout, or -errno. For an allocation that must wait for
// the cycle in flight (the heap is at maxHeap).
Napi::Value ReadBlocking(const Napi::CallbackInfo& info) {
  Args a(info, "readBlocking", 3);
  int fd = a.i32(0);
  Napi::Uint8Array buf = a.typedArray<Napi::Uint8Array>(1, napi_uint8_array);
  int timeoutMs = a.i32(2);
  if (!a.ok()) return a.fail();
  return Napi::Number::New(a.env(), double(readPipeFor(fd, buf.Data(), buf.ByteLength(), timeoutMs)));
}

// releaseArena(id, offset, bytes) -> 0 | errno
Napi::Value ReleaseArena(const Napi::CallbackInfo& info) {
  Args a(info, "releaseArena", 3);
  HeapMemory* h = a.heap(0);
  uint64_t offset = uint64_t(a.i64(1));
  uint64_t bytes = uint64_t(a.i64(2));
  if (!a.ok()) return a.fail();
  return Napi::Number::New(a.env(), releaseArenaRange(h, offset, bytes));
}

// restorePages(id, Uint8Array writable, Uint8Array wanted) -> whether the
// kernel can (huge_page_restore.cc): once the child is reaped, make the
// writable spans' pages writable again and merge the wanted 2 MiB ranges back,
// in the background.
Napi::Value RestorePages(const Napi::CallbackInfo& info) {
  Args a(info, "restorePages", 3);
  HeapMemory* h = a.heap(0);
  Napi::Uint8Array writable = a.typedArray<Napi::Uint8Array>(1, napi_uint8_array);
  Napi::Uint8Array wanted = a.typedArray<Napi::Uint8Array>(2, napi_uint8_array);
  if (!a.ok()) return a.fail();
  return Napi::Boolean::New(a.env(), restorePages(h, writable.Data(), writable.ElementLength(), wanted.Data(), wanted.ElementLength()));
}

// hugePageRestoreFigures(id) -> { rangesCollapsed, rangesFailed, ns,
// bytesMadeWritable, writableNs, writableFaults } so far, and `working`:
// whether the thread has a piece of work in progress now.
Napi::Value HugePageRestoreFiguresOf(const Napi::CallbackInfo& info) {
  Args a(info, "hugePageRestoreFigures", 1);
  HeapMemory* h = a.heap(0);
  if (!a.ok()) return a.fail();
  HugePageRestoreFigures f = hugePageRestoreFigures(h);
  Napi::Object o = Napi::Object::New(a.env());
  o["rangesCollapsed"] = double(f.rangesCollapsed);
  o["rangesFailed"] = double(f.rangesFailed);
  o["ns"] = double(f.ns);
  o["bytesMadeWritable"] = double(f.bytesMadeWritable);
  o["writableNs"] = double(f.writableNs);
  o["writableFaults"] = double(f.writableFaults);
  o["working"] = f.working;
  return o;
}

// A helper thread's quiesce(id) -> whether a piece of work is in progress
// (it takes no new one until resume(id)), and its resume(id): the prefault
// thread's (growth_prefault.cc) and the restore thread's
// (huge_page_restore.cc), exported as prefault/restore Quiesce/Resume.
Napi::Value HelperQuiesce(const Napi::CallbackInfo& info, const char* name, bool (*quiesce)(HeapMemory*)) {
  Args a(info, name, 1);
  HeapMemory* h = a.heap(0);
  if (!a.ok()) return a.fail();
  return Napi::Boolean::New(a.env(), quiesce(h));
}

Napi::Value HelperResume(const Napi::CallbackInfo& info, const char* name, void (*resume)(HeapMemory*)) {
  Args a(info, name, 1);
  HeapMemory* h = a.heap(0);
  if (!a.ok()) return a.fail();
  resume(h);
  return a.env().Undefined();
}

// A testing delay of one of the heap's threads: (id, ms), `ms` 0-60000.
Napi::Value SetThreadDelayForTesting(const Napi::CallbackInfo& info, const char* name, void (*set)(HeapMemory*, uint64_t)) {
  Args a(info, name, 2);
  HeapMemory* h = a.heap(0);
  double ms = a.number(1);
  if (!a.ok()) return a.fail();
  set(h, ms > 0 && ms <= 60000 ? uint64_t(ms * 1e6) : 0);
  return a.env().Undefined();
}

// setHugePageRestoreDelayForTesting(id, ms): the heap's restore thread sleeps
// `ms` after taking each piece of work (tests only: a slow range).
Napi::Value SetHugePageRestoreDelayForTesting(const Napi::CallbackInfo& info) {
  return SetThreadDelayForTesting(info, "setHugePageRestoreDelayForTesting", setHugePageRestoreDelayForTesting);
}

// setGrowthPrefaultDelayForTesting(id, ms): the heap's prefault thread sleeps
// `ms` after taking each chunk (tests only: a thread behind the allocator).
Napi::Value SetGrowthPrefaultDelayForTesting(const Napi::CallbackInfo& info) {
  return SetThreadDelayForTesting(info, "setGrowthPrefaultDelayForTesting", setGrowthPrefaultDelayForTesting);
}

// prefaultGrowth(id, from, to) -> whether the kernel can (growth_prefault.cc):
// the heap's prefault thread faults arena bytes [from, to) in, in the
// background, instead of what it was asked before.
Napi::Value PrefaultGrowth(const Napi::CallbackInfo& info) {
  Args a(info, "prefaultGrowth", 3);
  HeapMemory* h = a.heap(0);
  int64_t from = a.i64(1);
  int64_t to = a.i64(2);
  if (!a.ok()) return a.fail();
  if (from < 0 || to < 0) return a.fail();
  return Napi::Boolean::New(a.env(), prefaultGrowth(h, uint64_t(from), uint64_t(to)));
}

// growthPrefaultFigures(id) -> { bytes, ns, calls, failures, faults } so far.
Napi::Value GrowthPrefaultFiguresOf(const Napi::CallbackInfo& info) {
  Args a(info, "growthPrefaultFigures", 1);
  HeapMemory* h = a.heap(0);
  if (!a.ok()) return a.fail();
  GrowthPrefaultFigures f = growthPrefaultFigures(h);
  Napi::Object o = Napi::Object::New(a.env());
  o["bytes"] = double(f.bytes);
  o["ns"] = double(f.ns);
  o["calls"] = double(f.calls);
  o["failures"] = double(f.failures);
  o["faults"] = double(f.faults);
  o["working"] = f.working;
  return o;
}

// stageChunk(id, Uint32Array payload, seed, sum, wordOffset) -> marks staged,
// or kStage* (< 0): the parent's check and staging of one chunk (stage_marks.cc).
Napi::Value StageChunk(const Napi::CallbackInfo& info) {
  Args a(info, "stageChunk", 5);
  HeapMemory* h = a.heap(0);
  Napi::Uint32Array words = a.typedArray<Napi::Uint32Array>(1, napi_uint32_array);
  uint32_t seed = a.u32(2);
  uint32_t sum = a.u32(3);
  int64_t offset = a.i64(4);
  if (!a.ok()) return a.fail();
  if (offset < 0) return Napi::Number::New(a.env(), double(kStageOutOfRange));
  return Napi::Number::New(a.env(), double(stageChunk(h, words.Data(), words.ElementLength(), seed, sum, size_t(offset))));
}

// checksumWords(Uint32Array, seed): the wire checksum, for the binding test.
Napi::Value ChecksumWords(const Napi::CallbackInfo& info) {
  Args a(info, "checksumWords", 2);
  Napi::Uint32Array words = a.typedArray<Napi::Uint32Array>(0, napi_uint32_array);
  uint32_t seed = a.u32(1);
  if (!a.ok()) return a.fail();
  return Napi::Number::New(a.env(), wire::checksumWords(words.Data(), words.ElementLength(), seed));
}

Napi::Value LayoutConstants(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o["granuleBytes"] = kGranuleBytes;
  o["maxArenaBytes"] = double(kMaxArenaBytes);
  o["spanBytes"] = kSpanBytes;
  o["headerBytes"] = kHeaderBytes;
  o["typeFree"] = kTypeFree;
  o["typeRefArray"] = kTypeRefArray;
  o["typeBytes"] = kTypeBytes;
  o["typeString"] = kTypeString;
  o["firstStructType"] = kFirstStructType;
  o["maxTypes"] = kMaxTypes;
  o["descriptorWords"] = kDescriptorWords;
  o["kindStruct"] = kKindStruct;
  o["kindRefArray"] = kKindRefArray;
  o["kindLeaf"] = kKindLeaf;
  o["spanWords"] = kSpanWords;
  o["spanFree"] = kSpanFree;
  o["spanInUse"] = kSpanInUse;
  o["spanUnswept"] = kSpanUnswept;
  o["spanSweeping"] = kSpanSweeping;
  o["spanSwept"] = kSpanSwept;
  o["spanLargeTail"] = kSpanLargeTail;
  o["spanReserved"] = kSpanReserved;
  o["granuleShift"] = kGranuleShift;
  o["spanGranules"] = kSpanGranules;
  o["spanBitmapWords"] = kSpanBitmapWords;
  o["kindUndefined"] = kKindUndefined;
  o["swState"] = kSwState;
  o["swClass"] = kSwClass;
  o["swLive"] = kSwLive;
  o["swAux"] = kSwAux;
  o["freeClean"] = kFreeClean;
  o["freeDirty"] = kFreeDirty;
  o["freeReleased"] = kFreeReleased;
  o["spanZeroed"] = kSpanZeroed;
  o["spanNeedzero"] = kSpanNeedzero;
  o["wireHeaderMagic"] = wire::kHeaderMagic;
  o["wireChunkMagic"] = wire::kChunkMagic;
  o["wireTrailerMagic"] = wire::kTrailerMagic;
  o["wireVersion"] = wire::kVersion;
  o["wireHeaderBytes"] = wire::kHeaderBytes;
  o["wireChunkHeadBytes"] = wire::kChunkHeadBytes;
  o["wireTrailerBytes"] = wire::kTrailerBytes;
  o["wireChunkBytes"] = wire::kChunkBytes;
  o["wireStageBadChecksum"] = double(kStageBadChecksum);
  o["wireStageZombie"] = double(kStageZombie);
  o["wireStageOutOfRange"] = double(kStageOutOfRange);
  o["wireHeaderSeed"] = wire::kHeaderSeed;
  o["wireStreamSeed"] = wire::kStreamSeed;
  o["exitOrphaned"] = wire::kExitOrphaned;
  o["exitHeapCorrupt"] = wire::kExitHeapCorrupt;
  o["exitWriteFailed"] = wire::kExitWriteFailed;
  o["exitFault"] = wire::kExitFault;
  // The faults the child (or fork) can be told to commit (child.h), by name
  // as src/api/options.ts's FAULT_CODES spells them.
  o["faultExitBeforeMark"] = int32_t(kFaultExitBeforeMark);
  o["faultHang"] = int32_t(kFaultHang);
  o["faultTruncate"] = int32_t(kFaultTruncate);
  o["faultCorruptChunk"] = int32_t(kFaultCorruptChunk);
  o["faultWrongCycle"] = int32_t(kFaultWrongCycle);
  o["faultZombieMark"] = int32_t(kFaultZombieMark);
  o["faultExitNonzero"] = int32_t(kFaultExitNonZero);
  o["faultSignalAfterStream"] = int32_t(kFaultSignalAfterStream);
  o["faultStallMidStream"] = int32_t(kFaultStallMidStream);
  o["faultDelayBeforeMark"] = int32_t(kFaultDelayBeforeMark);
  o["faultForkEagain"] = int32_t(kFaultForkEagain);
  o["faultForkEnomem"] = int32_t(kFaultForkEnomem);
  o["faultBadTrailer"] = int32_t(kFaultBadTrailer);
  o["faultTouchExcluded"] = int32_t(kFaultTouchExcluded);
  o["faultDelayBeforeExit"] = int32_t(kFaultDelayBeforeExit);
  o["faultSlowStream"] = int32_t(kFaultSlowStream);
  o["pageSize"] = double(systemPageSize());
  o["hugePageBytes"] = double(kHugePageBytes);
  return o;
}

// Keeps this library loaded for the process's life. Node unloads an addon
// (dlclose) with the last environment that loaded it: a worker thread that
// made a heap and ended, the main thread never having loaded the addon,
// took with it the process-wide state meant to live once per process - the
// heap and child registries (heap ids started over at 1 in every worker:
// the heapId of events and traces repeated), the selective fork's buffers
// (fork_exclusion.cc), a descriptor then kept open (one leaked per worker;
// found in review). RTLD_NOLOAD | RTLD_NODELETE only marks the loaded library.
void keepLoaded() {
  Dl_info self;
  if (dladdr(reinterpret_cast<void*>(&keepLoaded), &self) == 0 || self.dli_fname == nullptr) return;
  dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  static std::once_flag kept;
  std::call_once(kept, keepLoaded);
  guardOtherForks();
  exports["createHeap"] = Napi::Function::New(env, CreateHeap);
  exports["attachHeap"] = Napi::Function::New(env, AttachHeap);
  exports["detachHeap"] = Napi::Function::New(env, DetachHeap);
  exports["heapDestroyed"] = Napi::Function::New(env, HeapDestroyed);
  exports["heapAttachments"] = Napi::Function::New(env, HeapAttachments);
  exports["destroyHeap"] = Napi::Function::New(env, DestroyHeap);
  exports["forkCycle"] = Napi::Function::New(env, ForkCycle);
  exports["markInProcess"] = Napi::Function::New(env, MarkInProcess);
  exports["waitChild"] = Napi::Function::New(env, WaitChild);
  exports["adoptChildPipe"] = Napi::Function::New(env, AdoptChildPipe);
  exports["readBlocking"] = Napi::Function::New(env, ReadBlocking);
  exports["releaseArena"] = Napi::Function::New(env, ReleaseArena);
  exports["restorePages"] = Napi::Function::New(env, RestorePages);
  exports["hugePageRestoreFigures"] = Napi::Function::New(env, HugePageRestoreFiguresOf);
  exports["restoreQuiesce"] = Napi::Function::New(env, [](const Napi::CallbackInfo& i) {
    return HelperQuiesce(i, "restoreQuiesce", hugePageRestoreQuiesce);
  });
  exports["restoreResume"] = Napi::Function::New(env, [](const Napi::CallbackInfo& i) {
    return HelperResume(i, "restoreResume", hugePageRestoreResume);
  });
  exports["setHugePageRestoreDelayForTesting"] = Napi::Function::New(env, SetHugePageRestoreDelayForTesting);
  exports["setGrowthPrefaultDelayForTesting"] = Napi::Function::New(env, SetGrowthPrefaultDelayForTesting);
  exports["prefaultGrowth"] = Napi::Function::New(env, PrefaultGrowth);
  exports["growthPrefaultFigures"] = Napi::Function::New(env, GrowthPrefaultFiguresOf);
  exports["prefaultQuiesce"] = Napi::Function::New(env, [](const Napi::CallbackInfo& i) {
    return HelperQuiesce(i, "prefaultQuiesce", prefaultQuiesce);
  });
  exports["prefaultResume"] = Napi::Function::New(env, [](const Napi::CallbackInfo& i) {
    return HelperResume(i, "prefaultResume", prefaultResume);
  });
  exports["stageChunk"] = Napi::Function::New(env, StageChunk);
  exports["checksumWords"] = Napi::Function::New(env, ChecksumWords);
  // string_encode.cc owns this module's N-API instance data (the per-thread
  // scratch): nothing else here may set it.
  exportStringEncoder(env, exports);
  exports["layoutConstants"] = Napi::Function::New(env, LayoutConstants);
  return exports;
}

}  // namespace
}  // namespace forkgc

static Napi::Object InitForkgc(Napi::Env env, Napi::Object exports) { return forkgc::Init(env, exports); }
NODE_API_MODULE(forkgc, InitForkgc)
