// Errors raised by the native core. The N-API layer turns each kind into the matching JS error class;
// nothing in the addon aborts the process.
#pragma once
#include <stdexcept>
#include <string>

namespace bssn {

enum class ErrorKind { Error, TypeError, RangeError };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void throwError(const std::string& message) { throw Error(ErrorKind::Error, message); }
[[noreturn]] inline void throwTypeError(const std::string& message) { throw Error(ErrorKind::TypeError, message); }
[[noreturn]] inline void throwRangeError(const std::string& message) { throw Error(ErrorKind::RangeError, message); }

}  // namespace bssn
