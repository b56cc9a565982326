// The portable build's glibc pins and replacements (see glibc_pins.def). x86-64 Linux only: the prebuilt binary's
// platform.
#if !defined(__x86_64__) || !defined(__linux__)
#error "native/portable/ is for the linux-x64 prebuilt binary (BSSN_PORTABLE=ON) only"
#endif

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

// Each pinned __wrap_<name> is a bare jump to <name>@<version>: arguments, return value and the caller's return
// address (which dlopen uses to find the calling object's RUNPATH and namespace) pass through untouched, whatever
// the function's signature.
#define BSSN_GLIBC_PIN(name, version)                                   \
  __asm__(".pushsection .text\n"                                        \
          ".symver bssn_pinned_" #name ", " #name "@" version "\n"      \
          ".globl __wrap_" #name "\n"                                   \
          ".hidden __wrap_" #name "\n"                                  \
          ".type __wrap_" #name ", @function\n"                         \
          "__wrap_" #name ":\n"                                         \
          "  jmp bssn_pinned_" #name "@PLT\n"                           \
          ".size __wrap_" #name ", .-__wrap_" #name "\n"                \
          ".popsection\n");
#define BSSN_GLIBC_REPLACE(name)
#include "portable/glibc_pins.def"
#undef BSSN_GLIBC_PIN
#undef BSSN_GLIBC_REPLACE

extern "C" {

// glibc 2.32's __libc_single_threaded, read by libstdc++'s inline code (ext/atomicity.h) to skip atomic
// operations while a process has one thread. Node always runs several, where glibc's own value is 0 too:
// a constant 0 (use atomics) is always correct.
__attribute__((visibility("hidden"))) char __wrap___libc_single_threaded = 0;

// glibc 2.36's arc4random, referenced by libstdc++'s std::random_device (its object file comes in with the
// copy-on-write std::string instantiations that std::logic_error needs). bssn never makes a random_device; if
// anything does, this draws from the kernel as glibc's does: getrandom, else /dev/urandom, else abort (arc4random
// cannot fail).
__attribute__((visibility("hidden"))) uint32_t __wrap_arc4random(void) {
  uint32_t value = 0;
  auto* p = reinterpret_cast<unsigned char*>(&value);
  size_t left = sizeof value;
  while (left > 0) {
    const long n = syscall(SYS_getrandom, p, left, 0);
    if (n > 0) {
      p += n;
      left -= size_t(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  if (left > 0) {
    const int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && left > 0) {
      const ssize_t n = read(fd, p, left);
      if (n > 0) {
        p += n;
        left -= size_t(n);
      } else if (!(n < 0 && errno == EINTR)) {
        break;
      }
    }
    if (fd >= 0) close(fd);
  }
  if (left > 0) abort();
  return value;
}

}  // extern "C"
