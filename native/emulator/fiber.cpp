#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define BSSN_EMU_ASAN 1
#else
#define BSSN_EMU_ASAN 0
#endif

#include <pthread.h>

namespace bssn::emu {

namespace {
// Kernel code is small, but AddressSanitizer's redzones need far more stack.
constexpr size_t kStackBytes = BSSN_EMU_ASAN ? size_t(512) << 10 : size_t(128) << 10;
}  // namespace

namespace {
// Stacks come from slabs of kSlabStacks: a cooperative grid holds a stack for every one of its threads at once,
// and a mapping (plus a guard page's) per stack would exceed Linux's default 65530 mappings per process at about
// 30000 threads. A slab has a guard page below its lowest stack; the others end in a canary that
// FiberStack::intact() checks, so an overflow into a neighbour is reported rather than silent.
constexpr size_t kSlabStacks = 64;
constexpr uint64_t kCanary = 0x5bd1e995c0ffee11ull;
constexpr size_t kCanaryWords = 8;
std::mutex slabMutex;
std::vector<void*>& freeStacks() {
  static auto* v = new std::vector<void*>();  // never destroyed: stacks outlive static destruction order
  return *v;
}
}  // namespace

FiberStack::FiberStack() {
  size_ = kStackBytes;
  std::lock_guard<std::mutex> lock(slabMutex);
  if (freeStacks().empty()) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    void* slab = mmap(nullptr, page + kSlabStacks * size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (slab == MAP_FAILED) throw std::bad_alloc();
    mprotect(slab, page, PROT_NONE);  // the slab's lowest stack faults on overflow
    for (size_t i = kSlabStacks; i-- > 0;) freeStacks().push_back(static_cast<char*>(slab) + page + i * size_);
  }
  base_ = freeStacks().back();
  freeStacks().pop_back();
  std::fill_n(static_cast<uint64_t*>(base_), kCanaryWords, kCanary);
}

FiberStack::~FiberStack() {
#if BSSN_EMU_ASAN
  // AddressSanitizer keeps its shadow for the memory: the stack frames' redzones would poison whatever runs on it
  // next (reported as a stack-buffer-underflow).
  __asan_unpoison_memory_region(base_, size_);
#endif
  std::lock_guard<std::mutex> lock(slabMutex);
  freeStacks().push_back(base_);  // slabs stay mapped, for the next stacks
}

bool FiberStack::intact() const {
  const auto* words = static_cast<const uint64_t*>(base_);
  return std::all_of(words, words + kCanaryWords, [](uint64_t w) { return w == kCanary; });
}

#if defined(__x86_64__)
// Saves the callee-saved registers and the SSE/x87 control words on the current stack, stores the stack pointer
// in *from, then loads `to` and restores the same from there: about 20 instructions, no system call (ucontext's
// swapcontext makes a sigprocmask call per switch, which would dominate the emulated suite's time).
extern "C" void bssn_emu_switch(void** from, void* to);
asm(R"(
  .text
  .p2align 4
  .globl bssn_emu_switch
  .hidden bssn_emu_switch
  .type bssn_emu_switch,@function
bssn_emu_switch:
  .cfi_startproc
  pushq %rbp
  .cfi_adjust_cfa_offset 8
  pushq %rbx
  .cfi_adjust_cfa_offset 8
  pushq %r12
  .cfi_adjust_cfa_offset 8
  pushq %r13
  .cfi_adjust_cfa_offset 8
  pushq %r14
  .cfi_adjust_cfa_offset 8
  pushq %r15
  .cfi_adjust_cfa_offset 8
  subq $8, %rsp
  .cfi_adjust_cfa_offset 8
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  .cfi_adjust_cfa_offset -8
  popq %r15
  .cfi_adjust_cfa_offset -8
  popq %r14
  .cfi_adjust_cfa_offset -8
  popq %r13
  .cfi_adjust_cfa_offset -8
  popq %r12
  .cfi_adjust_cfa_offset -8
  popq %rbx
  .cfi_adjust_cfa_offset -8
  popq %rbp
  .cfi_adjust_cfa_offset -8
  ret
  .cfi_endproc
  .size bssn_emu_switch,.-bssn_emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");

void prepare(Context& context, FiberStack& stack, void (*entry)()) {
#if BSSN_EMU_ASAN
  // A reused stack still carries the redzones of its previous fiber's frames: only the entry frame's (at the top)
  // when that fiber finished, since returning frames clear their own; all of them when it was abandoned.
  const size_t dirty = stack.abandoned ? stack.size() : std::min(stack.size(), size_t(16) << 10);
  __asan_unpoison_memory_region(static_cast<char*>(stack.base()) + stack.size() - dirty, dirty);
  stack.abandoned = false;
#endif
  // The frame bssn_emu_switch pops: control words, six registers, then `entry` as the return address, placed so
  // that entry starts with the stack alignment of a called function (rsp % 16 == 8).
  auto top = reinterpret_cast<uintptr_t>(stack.base()) + stack.size();
  top &= ~uintptr_t(15);
  auto* frame = reinterpret_cast<uint64_t*>(top - 72);
  frame[0] = 0x037F00001F80ull;  // MXCSR default (low 32 bits), x87 control word default (next 16)
  for (int i = 1; i <= 6; ++i) frame[i] = 0;
  frame[7] = reinterpret_cast<uint64_t>(entry);
  frame[8] = 0;  // entry's would-be return address: it never returns
  context.sp = frame;
  context.fakeStack = nullptr;
  context.stackBase = stack.base();
  context.stackSize = stack.size();
}

static inline void rawSwitch(Context& from, Context& to) { bssn_emu_switch(&from.sp, to.sp); }
#else
// Portable fallback (aarch64 and others): ucontext, slower but correct.
void prepare(Context& context, FiberStack& stack, void (*entry)()) {
#if BSSN_EMU_ASAN
  __asan_unpoison_memory_region(stack.base(), stack.size());
  stack.abandoned = false;
#endif
  getcontext(&context.uc);
  context.uc.uc_stack.ss_sp = stack.base();
  context.uc.uc_stack.ss_size = stack.size();
  context.uc.uc_link = nullptr;
  makecontext(&context.uc, entry, 0);
  context.stackBase = stack.base();
  context.stackSize = stack.size();
}
static inline void rawSwitch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

void initThreadContext(Context& context) {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* base = nullptr;
    size_t size = 0;
    pthread_attr_getstack(&attr, &base, &size);
    context.stackBase = base;
    context.stackSize = size;
    pthread_attr_destroy(&attr);
  }
}

void fiberStarted(Context& self) {
#if BSSN_EMU_ASAN
  // First entry into this fiber: there is no fake stack of its own to resume.
  self.fakeStack = nullptr;
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#else
  (void)self;
#endif
}

void switchTo(Context& from, Context& to) {
#if BSSN_EMU_ASAN
  __sanitizer_start_switch_fiber(&from.fakeStack, to.stackBase, to.stackSize);
  rawSwitch(from, to);
  __sanitizer_finish_switch_fiber(from.fakeStack, nullptr, nullptr);
#else
  rawSwitch(from, to);
#endif
}

void finalSwitch(Context& from, Context& to) {
#if BSSN_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, to.stackBase, to.stackSize);
#endif
  rawSwitch(from, to);
  std::abort();  // never resumed
}

}  // namespace bssn::emu
