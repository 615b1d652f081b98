// Strings.alloc's encoder: a string's UTF-8 form in one call, into a
// per-thread scratch.
//
// utf8Scratch() -> Uint8Array: this thread's scratch, made at the first call
// and kept in the environment's instance data (with a reference that keeps it
// alive; every later call returns the same one). encodeUtf8(string) -> bytes
// writes the string's UTF-8 form at the start of it, followed by 4 zero
// bytes. Strings.alloc then allocates the object at its exact size and copies
// it in a word at a time (the zeros keep the slot's tail as the allocator
// left it). One call instead of
// Buffer.byteLength then utf8Write, each of which flattens, checks and
// converts on its own. -1 when the string may not have fit (the caller then
// takes the two-call path): V8 stops before a character that would not fit,
// so a result within 4 bytes of the room is not trusted. Lone surrogates
// would be written as U+FFFD; the caller has refused them.
//
// Written against the C API (no CallbackInfo, no Args, no typed-array
// argument): it runs once per string allocated, and each of those cost as
// much as the encoding itself (measured: 230 ns a call with a typed-array
// argument through node-addon-api, 120-140 ns this way, for a 45-byte string).
#include "string_encode.h"

#include <string.h>

namespace forkgc {
namespace {

constexpr size_t kUtf8ScratchBytes = 16384;

struct Utf8Scratch {
  napi_ref keep = nullptr;
  char* data = nullptr;
  size_t room = 0;
};

void deleteUtf8Scratch(napi_env env, void* data, void*) {
  auto* scratch = static_cast<Utf8Scratch*>(data);
  if (scratch->keep) napi_delete_reference(env, scratch->keep);
  delete scratch;
}

napi_value Utf8ScratchOf(napi_env env, napi_callback_info) {
  void* instance = nullptr;
  napi_value array;
  if (napi_get_instance_data(env, &instance) == napi_ok && instance != nullptr) {
    if (napi_get_reference_value(env, static_cast<Utf8Scratch*>(instance)->keep, &array) == napi_ok) return array;
    napi_throw_error(env, nullptr, "utf8Scratch: the scratch is gone");
    return nullptr;
  }
  napi_value buffer;
  void* data = nullptr;
  auto* scratch = new Utf8Scratch();
  if (napi_create_arraybuffer(env, kUtf8ScratchBytes, &data, &buffer) != napi_ok ||
      napi_create_typedarray(env, napi_uint8_array, kUtf8ScratchBytes, buffer, 0, &array) != napi_ok ||
      napi_create_reference(env, array, 1, &scratch->keep) != napi_ok) {
    deleteUtf8Scratch(env, scratch, nullptr);
    napi_throw_error(env, nullptr, "utf8Scratch: cannot make the scratch");
    return nullptr;
  }
  scratch->data = static_cast<char*>(data);
  scratch->room = kUtf8ScratchBytes;
  if (napi_set_instance_data(env, scratch, deleteUtf8Scratch, nullptr) != napi_ok) {
    deleteUtf8Scratch(env, scratch, nullptr);
    napi_throw_error(env, nullptr, "utf8Scratch: cannot keep the scratch");
    return nullptr;
  }
  return array;
}

napi_value EncodeUtf8(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void* instance = nullptr;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 1 ||
      napi_get_instance_data(env, &instance) != napi_ok || instance == nullptr) {
    napi_throw_type_error(env, nullptr, "encodeUtf8: no utf8Scratch() yet on this thread");
    return nullptr;
  }
  auto* scratch = static_cast<Utf8Scratch*>(instance);
  size_t written = 0;
  // Writes at most room - 1 bytes, then a NUL; not a string: napi_string_expected.
  napi_status status = napi_get_value_string_utf8(env, argv[0], scratch->data, scratch->room, &written);
  if (status == napi_string_expected) {
    napi_throw_type_error(env, nullptr, "encodeUtf8: not a string");
    return nullptr;
  }
  napi_value result;
  if (status != napi_ok || written + 4 + 4 >= scratch->room - 1) {
    napi_create_int32(env, -1, &result);
    return result;
  }
  memset(scratch->data + written, 0, 4);
  napi_create_uint32(env, uint32_t(written), &result);
  return result;
}

}  // namespace

void exportStringEncoder(Napi::Env env, Napi::Object exports) {
  napi_value encode;
  if (napi_create_function(env, "encodeUtf8", NAPI_AUTO_LENGTH, EncodeUtf8, nullptr, &encode) == napi_ok) {
    exports["encodeUtf8"] = Napi::Value(env, encode);
  }
  napi_value scratch;
  if (napi_create_function(env, "utf8Scratch", NAPI_AUTO_LENGTH, Utf8ScratchOf, nullptr, &scratch) == napi_ok) {
    exports["utf8Scratch"] = Napi::Value(env, scratch);
  }
}

}  // namespace forkgc
