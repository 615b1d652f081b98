// Built instead of the real addon where there is no Linux fork/madvise/prctl,
// so that `npm install` succeeds and src/platform/native.ts can say clearly, at load,
// that forkgc needs Linux (UnsupportedPlatformError).
#include <napi.h>

static Napi::Object InitUnsupported(Napi::Env env, Napi::Object exports) {
  exports["unsupported"] = Napi::Boolean::New(env, true);
  return exports;
}
NODE_API_MODULE(forkgc, InitUnsupported)
