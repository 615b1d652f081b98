// See child_registry.h. A child in flight belongs to the JS environment that
// forked it, which reaps it from its event loop. If that environment ends
// first (a Worker terminated mid-cycle), PDEATHSIG kills the child when the
// forking thread exits, but nobody would reap it: the environment's cleanup
// hook kills and reaps it then.
#include "child_registry.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mutex>
#include <unordered_map>

#include "growth_prefault.h"
#include "huge_page_restore.h"
#include "marker.h"

namespace forkgc {
namespace {

struct ChildWatch {
  pid_t pid;
  int fd;  // the pipe's read end while no JS code owns it, else -1
  bool sharesAll;  // holds every heap's huge-page restore until reaped
};
std::mutex childMutex;
std::unordered_map<pid_t, ChildWatch*> children;

// waitpid without blocking, polled every millisecond until `timeoutMs` has
// passed (0: one look): every wait on a child is bounded. Returns what the
// last waitpid returned (0: still running), with errno from it.
pid_t waitPidFor(pid_t pid, int* status, double timeoutMs) {
  const uint64_t deadline = monotonicNs() + uint64_t(timeoutMs > 0 ? timeoutMs * 1e6 : 0);
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r < 0 && errno == EINTR) continue;
    if (r != 0 || monotonicNs() >= deadline) return r;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, nullptr);
  }
}

void reapOrphanedChild(void* arg) {
  ChildWatch* w = static_cast<ChildWatch*>(arg);
  {
    std::lock_guard<std::mutex> lock(childMutex);
    children.erase(w->pid);
  }
  if (w->fd >= 0) close(w->fd);
  kill(w->pid, SIGKILL);
  // SIGKILL ends it within a scheduler tick unless it is in uninterruptible
  // sleep; after 5 s the environment goes on and the process's exit reaps
  // what is left.
  int status;
  // Reaped, or past hope: either way it no longer holds the restore threads
  // of the heaps that go on (a child still there shares nothing anyone
  // will fork or collapse for long: the process is ending or the thread is).
  waitPidFor(w->pid, &status, 5000);
  if (w->sharesAll) {
    releaseEveryHugePageRestore();
    releaseEveryGrowthPrefault();
  }
  delete w;
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
  if (w->sharesAll) {
    releaseEveryHugePageRestore();
    releaseEveryGrowthPrefault();
  }
  delete w;
}

}  // namespace

void watchChild(napi_env env, pid_t pid, int fd, bool sharesAll) {
  ChildWatch* w = new ChildWatch{pid, fd, sharesAll};
  {
    std::lock_guard<std::mutex> lock(childMutex);
    children[pid] = w;
  }
  napi_add_env_cleanup_hook(env, reapOrphanedChild, w);
}

void adoptChildPipe(pid_t pid) {
  std::lock_guard<std::mutex> lock(childMutex);
  auto it = children.find(pid);
  if (it != children.end()) it->second->fd = -1;
}

ChildEnd waitChildFor(napi_env env, pid_t pid, double timeoutMs) {
  int status = 0;
  pid_t r = waitPidFor(pid, &status, timeoutMs);
  ChildEnd end;
  if (r == 0) return end;
  int error = errno;
  childReaped(env, pid);
  if (r < 0) {
    end.state = ChildEnd::kGone;
    end.error = error;
  } else if (WIFEXITED(status)) {
    end.state = ChildEnd::kExited;
    end.code = WEXITSTATUS(status);
  } else {
    end.state = ChildEnd::kSignaled;
    end.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  }
  return end;
}

int64_t readPipeFor(int fd, uint8_t* into, size_t bytes, int timeoutMs) {
  struct pollfd p = {fd, POLLIN, 0};
  int ready;
  do {
    ready = poll(&p, 1, timeoutMs);
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) return -1;
  if (ready < 0) return -errno;
  ssize_t n;
  do {
    n = read(fd, into, bytes);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN ? -1 : -errno;
  return n;
}

}  // namespace forkgc
