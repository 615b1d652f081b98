// The parent's bookkeeping of the children it forked: which environment owns
// each one (so a child whose environment ends first is still killed and
// reaped), waiting for a child with a deadline, and reading its pipe with a
// deadline. The child's own code is native/child.cc.
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include <node_api.h>

namespace forkgc {

// A child forked from environment `env`: reaped by that environment's event
// loop, or killed and reaped by its cleanup hook if the environment ends first.
// `fd` is the read end of its pipe, closed by that hook too until JS takes it
// (adoptChildPipe): a Worker terminated between forkCycle's return and its
// first JS step left it open for the process's life.
// `sharesAll`: the fork excluded nothing, so the child shares every heap's
// arena; its reaping releases holdEveryHugePageRestore (huge_page_restore.h).
void watchChild(napi_env env, pid_t pid, int fd, bool sharesAll);

// JS owns the child's pipe from now on (a socket, or its own close).
void adoptChildPipe(pid_t pid);

// How a child ended.
struct ChildEnd {
  enum State { kRunning, kExited, kSignaled, kGone } state = kRunning;
  int code = 0;    // kExited: exit status
  int signal = 0;  // kSignaled: the signal
  int error = 0;   // kGone: errno of waitpid (already reaped, or never ours)
};

// Waits up to timeoutMs (0: one poll) for the child to end, polling every
// millisecond: the main thread only waits like this for a child that has
// finished its stream or was SIGKILLed. A reaped child is forgotten.
ChildEnd waitChildFor(napi_env env, pid_t pid, double timeoutMs);

// Reads what the pipe has, waiting up to timeoutMs for it: bytes read, 0 at
// end of stream, -1 on timeout, or -errno.
int64_t readPipeFor(int fd, uint8_t* into, size_t bytes, int timeoutMs);

}  // namespace forkgc
