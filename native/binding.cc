// N-API bindings: argument unpacking and nothing else. Errors from the
// platform come back as errno values or status objects; src/native.ts turns
// them into the typed errors of src/errors.ts.
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <string.h>
#include <sys/wait.h>

#include <napi.h>

#include <mutex>
#include <unordered_map>

#include "arena.h"
#include "child.h"
#include "layout.h"
#include "marker.h"
#include "wire.h"

namespace forkgc {
namespace {

Napi::Value fail(Napi::Env env, const char* message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

HeapMemory* heapArg(const Napi::CallbackInfo& info, size_t index = 0) {
  if (info.Length() <= index || !info[index].IsNumber()) return nullptr;
  return lookupHeapMemory(info[index].As<Napi::Number>().Int32Value());
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

// createHeap(arenaBytes, hugePages, markStackEntries, maxRoots)
Napi::Value CreateHeap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) return fail(env, "createHeap: 4 arguments expected");
  HeapOptions o;
  o.arenaBytes = uint64_t(info[0].As<Napi::Number>().Int64Value());
  o.hugePages = info[1].As<Napi::Boolean>().Value();
  o.markStackEntries = info[2].As<Napi::Number>().Uint32Value();
  o.maxRoots = info[3].As<Napi::Number>().Uint32Value();
  if (o.arenaBytes == 0 || o.arenaBytes > kMaxArenaBytes || o.markStackEntries == 0 || o.maxRoots == 0)
    return fail(env, "createHeap: size out of range");
  HeapMemory* h = createHeapMemory(o);
  if (!h) {
    Napi::Object r = Napi::Object::New(env);
    r["errno"] = errno;
    r["message"] = strerror(errno);
    return r;
  }
  return views(env, h);
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
// once per heap and keeps the views (src/sweep-worker.ts).
Napi::Value AttachHeap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return fail(env, "attachHeap: id expected");
  HeapMemory* h = attachHeapMemory(info[0].As<Napi::Number>().Int32Value());
  if (!h) return env.Null();
  Attachment* a = new Attachment{h, env};
  napi_add_env_cleanup_hook(env, dropAttachment, a);
  Napi::Object o = views(env, h);
  o["attachment"] = Napi::External<Attachment>::New(env, a);
  return o;
}

// detachHeap(views): detaches the views and drops a worker's attachment.
Napi::Value DetachHeap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) return fail(env, "detachHeap: views expected");
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Value handle = o.Get("attachment");
  if (!handle.IsExternal()) return fail(env, "detachHeap: not an attachment");
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
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return fail(env, "heapDestroyed: id expected");
  return Napi::Boolean::New(env, lookupHeapMemory(info[0].As<Napi::Number>().Int32Value()) == nullptr);
}

// destroyHeap(views): detaches the owner's views and drops its reference.
Napi::Value DestroyHeap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) return fail(env, "destroyHeap: views expected");
  Napi::Object o = info[0].As<Napi::Object>();
  HeapMemory* h = lookupHeapMemory(o.Get("id").As<Napi::Number>().Int32Value());
  detachViews(o);
  if (h) destroyHeapMemory(h);
  return env.Undefined();
}

// A child in flight belongs to the JS environment that forked it, which
// reaps it from its event loop. If that environment ends first (a Worker
// terminated mid-cycle), PDEATHSIG kills the child when the forking thread
// exits, but nobody would reap it: this hook kills and reaps it then.
struct ChildWatch {
  pid_t pid;
};
std::mutex childMutex;
std::unordered_map<pid_t, ChildWatch*> children;

void reapOrphanedChild(void* arg) {
  ChildWatch* w = static_cast<ChildWatch*>(arg);
  {
    std::lock_guard<std::mutex> lock(childMutex);
    children.erase(w->pid);
  }
  kill(w->pid, SIGKILL);
  int status;
  while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR) {
  }
  delete w;
}

void watchChild(napi_env env, pid_t pid) {
  ChildWatch* w = new ChildWatch{pid};
  {
    std::lock_guard<std::mutex> lock(childMutex);
    children[pid] = w;
  }
  napi_add_env_cleanup_hook(env, reapOrphanedChild, w);
}

void childReaped(napi_env env, pid_t pid) {
  ChildWatch* w = nullptr;
  {
    std::lock_guard<std::mutex> lock(childMutex);
    auto it = children.find(pid);
    if (it == children.end()) return;
    w = it->second;
    children.erase(it);
  }
  napi_remove_env_cleanup_hook(env, reapOrphanedChild, w);
  delete w;
}

// forkCycle(id, cycleId, topGranule, rootCount, fault, faultArg[, selective])
Napi::Value ForkCycle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HeapMemory* h = heapArg(info);
  if (!h || info.Length() < 6) return fail(env, "forkCycle: bad arguments");
  ForkRequest req;
  req.heap = h;
  req.cycleId = info[1].As<Napi::Number>().Uint32Value();
  req.topGranule = info[2].As<Napi::Number>().Uint32Value();
  req.rootCount = info[3].As<Napi::Number>().Uint32Value();
  req.fault = info[4].As<Napi::Number>().Int32Value();
  req.faultArg = info[5].As<Napi::Number>().Int32Value();
  req.selective = info.Length() > 6 && info[6].IsBoolean() && info[6].As<Napi::Boolean>().Value();
  if (req.topGranule > h->arenaGranules()) return fail(env, "forkCycle: top beyond the arena");
  ForkResult r = startForkCycle(req);
  if (r.pid > 0) watchChild(env, r.pid);
  Napi::Object o = Napi::Object::New(env);
  o["pid"] = r.pid;
  o["fd"] = r.readFd;
  o["forkNs"] = double(r.forkNs);
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
  o["errno"] = r.error;
  o["message"] = r.error ? strerror(r.error) : "";
  return o;
}

// markInProcess(id, topGranule, rootCount[, granule]): the stop-the-world
// mark from the root table; or, given a granule, from that object alone into
// the parent's bitmap as it is (the weak-read barrier, src/weak.ts).
Napi::Value MarkInProcess(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HeapMemory* h = heapArg(info);
  if (!h || info.Length() < 3) return fail(env, "markInProcess: bad arguments");
  MarkInput in;
  in.arena = h->arena.base;
  in.topGranule = info[1].As<Napi::Number>().Uint32Value();
  in.allocBits = reinterpret_cast<const uint32_t*>(h->allocBits.base);
  in.markBits = reinterpret_cast<uint32_t*>(h->markBits.base);
  in.descriptors = reinterpret_cast<const uint32_t*>(h->descriptors.base);
  in.roots = reinterpret_cast<const uint32_t*>(h->roots.base);
  in.rootCount = info[2].As<Napi::Number>().Uint32Value();
  uint32_t single = 0;
  if (info.Length() > 3 && info[3].IsNumber()) {
    single = info[3].As<Napi::Number>().Uint32Value();
    in.roots = &single;
    in.rootCount = 1;
  }
  in.stack = reinterpret_cast<uint32_t*>(h->markStack.base);
  in.stackCapacity = h->markStackEntries();
  if (in.topGranule > h->arenaGranules()) return fail(env, "markInProcess: top beyond the arena");
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

// waitChild(pid, timeoutMs) -> null while it runs, else how it ended.
// timeoutMs 0 polls once; otherwise it polls every millisecond up to the
// limit (the main thread only waits like this for a child that has finished
// its stream or was SIGKILLed, both a matter of microseconds).
Napi::Value WaitChild(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber()) return fail(env, "waitChild: bad arguments");
  pid_t pid = info[0].As<Napi::Number>().Int32Value();
  double timeoutMs = info[1].As<Napi::Number>().DoubleValue();
  if (pid <= 0) return fail(env, "waitChild: bad pid");
  int status = 0;
  pid_t r;
  uint64_t deadline = monotonicNs() + uint64_t(timeoutMs > 0 ? timeoutMs * 1e6 : 0);
  for (;;) {
    r = waitpid(pid, &status, WNOHANG);
    if (r < 0 && errno == EINTR) continue;
    if (r != 0 || monotonicNs() >= deadline) break;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, nullptr);
  }
  if (r == 0) return env.Null();
  childReaped(env, pid);
  Napi::Object o = Napi::Object::New(env);
  if (r < 0) {
    o["state"] = "gone";  // already reaped, or never ours
    o["errno"] = errno;
  } else if (WIFEXITED(status)) {
    o["state"] = "exited";
    o["code"] = WEXITSTATUS(status);
  } else {
    o["state"] = "signaled";
    o["signal"] = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }
  return o;
}

// readBlocking(fd, Uint8Array, timeoutMs) -> bytes read, 0 at end of
// stream, -1 on timeout, or -errno. For an allocation that must wait for
// the cycle in flight (the heap is at maxHeap).
Napi::Value ReadBlocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsTypedArray()) return fail(env, "readBlocking: bad arguments");
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Uint8Array buf = info[1].As<Napi::Uint8Array>();
  int timeoutMs = info[2].As<Napi::Number>().Int32Value();
  struct pollfd p = {fd, POLLIN, 0};
  int ready;
  do {
    ready = poll(&p, 1, timeoutMs);
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) return Napi::Number::New(env, -1);
  if (ready < 0) return Napi::Number::New(env, -errno);
  ssize_t n;
  do {
    n = read(fd, buf.Data(), buf.ByteLength());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Napi::Number::New(env, errno == EAGAIN ? -1 : -errno);
  return Napi::Number::New(env, double(n));
}

// releaseArena(id, offset, bytes) -> 0 | errno
Napi::Value ReleaseArena(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HeapMemory* h = heapArg(info);
  if (!h || info.Length() < 3) return fail(env, "releaseArena: bad arguments");
  uint64_t offset = uint64_t(info[1].As<Napi::Number>().Int64Value());
  uint64_t bytes = uint64_t(info[2].As<Napi::Number>().Int64Value());
  return Napi::Number::New(env, releaseArenaRange(h, offset, bytes));
}

// checksumWords(Uint32Array, seed): the wire checksum, for the binding test.
Napi::Value ChecksumWords(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray()) return fail(env, "checksumWords: bad arguments");
  Napi::Uint32Array words = info[0].As<Napi::Uint32Array>();
  return Napi::Number::New(env, wire::checksumWords(words.Data(), words.ElementLength(),
                                                     info[1].As<Napi::Number>().Uint32Value()));
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
  o["spanLargeTail"] = kSpanLargeTail;
  o["spanReserved"] = kSpanReserved;
  o["wireHeaderMagic"] = wire::kHeaderMagic;
  o["wireChunkMagic"] = wire::kChunkMagic;
  o["wireTrailerMagic"] = wire::kTrailerMagic;
  o["wireVersion"] = wire::kVersion;
  o["wireHeaderBytes"] = wire::kHeaderBytes;
  o["wireChunkHeadBytes"] = wire::kChunkHeadBytes;
  o["wireTrailerBytes"] = wire::kTrailerBytes;
  o["wireChunkBytes"] = wire::kChunkBytes;
  o["wireHeaderSeed"] = wire::kHeaderSeed;
  o["wireStreamSeed"] = wire::kStreamSeed;
  o["exitOrphaned"] = wire::kExitOrphaned;
  o["exitHeapCorrupt"] = wire::kExitHeapCorrupt;
  o["exitWriteFailed"] = wire::kExitWriteFailed;
  o["exitFault"] = wire::kExitFault;
  o["pageSize"] = double(systemPageSize());
  o["hugePageBytes"] = double(kHugePageBytes);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports["createHeap"] = Napi::Function::New(env, CreateHeap);
  exports["attachHeap"] = Napi::Function::New(env, AttachHeap);
  exports["detachHeap"] = Napi::Function::New(env, DetachHeap);
  exports["heapDestroyed"] = Napi::Function::New(env, HeapDestroyed);
  exports["destroyHeap"] = Napi::Function::New(env, DestroyHeap);
  exports["forkCycle"] = Napi::Function::New(env, ForkCycle);
  exports["markInProcess"] = Napi::Function::New(env, MarkInProcess);
  exports["waitChild"] = Napi::Function::New(env, WaitChild);
  exports["readBlocking"] = Napi::Function::New(env, ReadBlocking);
  exports["releaseArena"] = Napi::Function::New(env, ReleaseArena);
  exports["checksumWords"] = Napi::Function::New(env, ChecksumWords);
  exports["layoutConstants"] = Napi::Function::New(env, LayoutConstants);
  return exports;
}

}  // namespace
}  // namespace forkgc

static Napi::Object InitForkgc(Napi::Env env, Napi::Object exports) { return forkgc::Init(env, exports); }
NODE_API_MODULE(forkgc, InitForkgc)
