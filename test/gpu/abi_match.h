// Compile-time ABI comparison of bssn's run-time-loading declarations with the real headers' (used by the
// check_*declarations.cpp files that test/gpu compiles on a GPU host).
#pragma once
#include <type_traits>

namespace {

// Same type, or an enum declared as an int of the same size, or pointers to such with the same constness, or
// structs of the same size (the including file checks their fields one by one).
template <class A, class B>
constexpr bool sameAbi() {
  if constexpr (std::is_same_v<A, B>) {
    return true;
  } else if constexpr ((std::is_enum_v<A> || std::is_integral_v<A>) && (std::is_enum_v<B> || std::is_integral_v<B>)) {
    return sizeof(A) == sizeof(B) && (std::is_enum_v<A> || std::is_enum_v<B>);
  } else if constexpr (std::is_class_v<A> && std::is_class_v<B>) {
    return sizeof(A) == sizeof(B);
  } else if constexpr (std::is_pointer_v<A> && std::is_pointer_v<B>) {
    using PA = std::remove_pointer_t<A>;
    using PB = std::remove_pointer_t<B>;
    return std::is_const_v<PA> == std::is_const_v<PB> && sameAbi<std::remove_cv_t<PA>, std::remove_cv_t<PB>>();
  } else {
    return false;
  }
}

template <class Ours, class Theirs>
struct SameSignature : std::false_type {};

template <class R1, class... A1, class R2, class... A2>
struct SameSignature<R1 (*)(A1...), R2 (*)(A2...)> {
  static constexpr bool value = [] {
    if constexpr (sizeof...(A1) != sizeof...(A2)) {
      return false;
    } else {
      return sameAbi<R1, R2>() && (sameAbi<A1, A2>() && ...);
    }
  }();
};

template <class Ours, class Theirs>
constexpr bool matches(Theirs) {
  return SameSignature<Ours, Theirs>::value;
}

}  // namespace
