// Errors raised by the native core. The N-API layer turns each kind into the matching JS error class;
// nothing in the addon aborts the process.
#pragma once
#include <new>
#include <stdexcept>
#include <string>

namespace bssn {

enum class ErrorKind { Error, TypeError, RangeError };

// A stable identity for an error, beside its message, as Node's own errors have (`error.code` in JS; listed in the
// README). Default: ERR_BSSN_INVALID_ARGUMENT for TypeError, ERR_BSSN_OUT_OF_RANGE for RangeError, else
// ERR_BSSN_FAILED.
enum class ErrorCode { Default, Disposed, OutOfMemory, CudaUnavailable, DeviceFault, LibraryMissing, ShareGone, Capture, Collective };

inline const char* codeName(ErrorKind kind, ErrorCode code) {
  switch (code) {
    case ErrorCode::Disposed: return "ERR_BSSN_DISPOSED";
    case ErrorCode::OutOfMemory: return "ERR_BSSN_OUT_OF_MEMORY";
    case ErrorCode::CudaUnavailable: return "ERR_BSSN_CUDA_UNAVAILABLE";
    case ErrorCode::DeviceFault: return "ERR_BSSN_DEVICE_FAULT";
    case ErrorCode::LibraryMissing: return "ERR_BSSN_LIBRARY_MISSING";
    case ErrorCode::ShareGone: return "ERR_BSSN_SHARE_GONE";
    case ErrorCode::Capture: return "ERR_BSSN_CAPTURE";
    case ErrorCode::Collective: return "ERR_BSSN_COLLECTIVE_FAILED";
    case ErrorCode::Default: break;
  }
  return kind == ErrorKind::TypeError ? "ERR_BSSN_INVALID_ARGUMENT" : kind == ErrorKind::RangeError ? "ERR_BSSN_OUT_OF_RANGE" : "ERR_BSSN_FAILED";
}

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message, ErrorCode code = ErrorCode::Default)
      : std::runtime_error(message), kind_(kind), code_(code) {}
  ErrorKind kind() const { return kind_; }
  ErrorCode code() const { return code_; }

 private:
  ErrorKind kind_;
  ErrorCode code_;
};

[[noreturn]] inline void throwError(const std::string& message, ErrorCode code = ErrorCode::Default) {
  throw Error(ErrorKind::Error, message, code);
}
[[noreturn]] inline void throwTypeError(const std::string& message) { throw Error(ErrorKind::TypeError, message); }
[[noreturn]] inline void throwRangeError(const std::string& message) { throw Error(ErrorKind::RangeError, message); }

// The exception being handled, as an Error: call it only inside a catch block, on any thread. It keeps a failure
// as data (kind, code, message), so that another thread can report it (a stream's sticky error, a read's promise):
// std::bad_alloc is OutOfMemory, any other exception a plain Error with its message.
inline Error currentError() {
  try {
    throw;
  } catch (const Error& e) {
    return e;
  } catch (const std::bad_alloc&) {
    return Error(ErrorKind::Error, "out of host memory", ErrorCode::OutOfMemory);
  } catch (const std::exception& e) {
    return Error(ErrorKind::Error, e.what());
  } catch (...) {
    return Error(ErrorKind::Error, "unknown native failure");
  }
}

}  // namespace bssn
