// Fibers for the emulator's GPU threads: a stack and a saved stack pointer, switched in user space.
#pragma once
#include <cstddef>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace bssn::emu {

// A fiber's stack, reused across the threads of many blocks; from a slab of stacks (fiber.cpp).
class FiberStack {
 public:
  FiberStack();
  ~FiberStack();
  FiberStack(const FiberStack&) = delete;
  FiberStack& operator=(const FiberStack&) = delete;
  void* base() const { return base_; }
  size_t size() const { return size_; }
  // Set when a fiber was abandoned on it mid-kernel: its frames' AddressSanitizer redzones are all still there.
  bool abandoned = false;
  // False when a fiber overflowed it (its canary at the bottom is overwritten).
  bool intact() const;

 private:
  void* base_ = nullptr;
  size_t size_ = 0;
};

// A saved execution context. switchTo() suspends the caller into `from` and resumes `to`.
struct Context {
  void* sp = nullptr;
  // For AddressSanitizer: the stack this context runs on (null for an OS thread's own stack).
  const void* stackBase = nullptr;
  size_t stackSize = 0;
  void* fakeStack = nullptr;
#if !defined(__x86_64__)
  ucontext_t uc;
#endif
};

// The calling OS thread's own stack as a context to switch back to.
void initThreadContext(Context& context);

// Prepares `context` to start entry() on `stack` at its first switchTo. entry must never return: it ends by
// switching away for good (finalSwitch).
void prepare(Context& context, FiberStack& stack, void (*entry)());
void switchTo(Context& from, Context& to);
// First thing a fiber's entry does (completes the switch for AddressSanitizer).
void fiberStarted(Context& self);
// Like switchTo, for a fiber that will never be resumed (lets AddressSanitizer drop its fake stack). Not declared
// [[noreturn]]: AddressSanitizer instruments calls to noreturn functions with a stack check that costs a system
// call, once per GPU thread.
void finalSwitch(Context& from, Context& to);

}  // namespace bssn::emu
