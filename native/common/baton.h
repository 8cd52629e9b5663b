// Argument "batons": a launch takes one BigInt64Array whose slots are named
// once, in an X-macro list; TypeScript reads the same names from the field
// map the binding exports, so the two sides cannot drift apart, and a launch
// costs one typed array instead of dozens of property lookups.
#pragma once

#include <napi.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "common/args.h"

namespace wideep {

// Typed access to one baton.
template <class Field>
class Baton {
 public:
  explicit Baton(const int64_t* v) : v_(v) {}
  int64_t operator[](Field f) const { return v_[static_cast<int>(f)]; }
  int Int(Field f) const { return static_cast<int>(v_[static_cast<int>(f)]); }
  // A float slot: JS stores the float32's bits.
  float Float(Field f) const {
    uint32_t u = static_cast<uint32_t>(v_[static_cast<int>(f)]);
    float out;
    std::memcpy(&out, &u, sizeof out);
    return out;
  }
  template <class T>
  T* Ptr(Field f) const {
    return reinterpret_cast<T*>(static_cast<uintptr_t>(v_[static_cast<int>(f)]));
  }

 private:
  const int64_t* v_;
};

// The baton at argument `i`: a BigInt64Array of exactly Field::kCount slots.
template <class Field>
Baton<Field> ReadBatonArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::TypedArray arr = ArgTypedArray(info, i, "baton");
  constexpr size_t kCount = static_cast<size_t>(Field::kCount);
  if (arr.TypedArrayType() != napi_bigint64_array || arr.ElementLength() != kCount) {
    ThrowInvalidArg(info.Env(), "baton: expected a BigInt64Array of " + std::to_string(kCount) + " slots");
  }
  return Baton<Field>(reinterpret_cast<const int64_t*>(static_cast<uint8_t*>(arr.ArrayBuffer().Data()) +
                                                       arr.ByteOffset()));
}

}  // namespace wideep

// {name: index, ..., length} for an X-macro field list.
#define WIDEEP_FIELD_MAP_ENTRY(name) map.Set(#name, index++);
#define WIDEEP_FIELD_MAP(env, LIST)                 \
  ([&]() {                                          \
    Napi::Object map = Napi::Object::New(env);      \
    int index = 0;                                  \
    LIST(WIDEEP_FIELD_MAP_ENTRY)                    \
    map.Set("length", index);                       \
    return map;                                     \
  }())
