// Strings.alloc's encoder (string_encode.cc says how and why).
#pragma once
#include <napi.h>

namespace forkgc {

// Adds encodeUtf8(string) and utf8Scratch() to the addon's exports.
void exportStringEncoder(Napi::Env env, Napi::Object exports);

}  // namespace forkgc
