// A timing shim for nats.c 3.4 (LD_PRELOAD into `gatehouse webhooks`, see
// integration_test.cpp): forces the interleaving of a crash that a loaded CI
// machine hit once in three runs.
//
// natsConnection_Destroy returns while the delivery thread of the
// connection's request/reply subscription (JetStream API calls) still holds
// the library. When that thread lets go last, it frees the library and then
// takes gLib.lock again; if exit() ran nats.c's atexit handler in between,
// that lock is destroyed and null (SEGV at 0x10 in pthread_mutex_trylock).
// Here the delivery thread ends only after nats_Close (if the process calls
// it), the process's exit waits until that thread is freeing the library,
// and the thread lingers there. A process that waits for the library to be
// gone before it exits (nats_CloseAndWait) is not affected.
//
// Every hook calls the real function; one that nats.c does not export (a
// later version) is simply not called, and nothing is forced.
#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <sys/syscall.h>
#include <thread>

namespace {

std::atomic<bool> lib_closed{false};
std::atomic<bool> freeing_lib{false};

void* next(const char* name) {
  return ::dlsym(RTLD_NEXT, name);
}

void wait_for(const std::atomic<bool>& flag, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!flag && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

bool main_thread() {
  return ::syscall(SYS_gettid) == ::getpid();
}

// atexit handlers run in reverse order of registration: this one, registered
// after nats.c's (nats_Open), runs before it.
void before_nats_atexit() {
  wait_for(freeing_lib, std::chrono::seconds(2));
}

// Registered first, runs last: keeps the process until the thread is done.
void linger() {
  if (lib_closed)
    std::this_thread::sleep_for(std::chrono::seconds(1));
}

__attribute__((constructor)) void init() {
  std::atexit(linger);
}

} // namespace

extern "C" {

void nats_Close(void) {
  if (auto real = reinterpret_cast<void (*)()>(next("nats_Close")))
    real();
  std::atexit(before_nats_atexit);
  lib_closed = true;
}

void natsSub_deliverMsgs(void* arg) {
  if (auto real
      = reinterpret_cast<void (*)(void*)>(next("natsSub_deliverMsgs")))
    real(arg);
  wait_for(lib_closed, std::chrono::seconds(1));
}

// Called by nats.c while it frees the library, after the last reference
// went and before it takes gLib.lock again.
void natsNUID_free(void) {
  if (!main_thread()) {
    freeing_lib = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (auto real = reinterpret_cast<void (*)()>(next("natsNUID_free")))
    real();
}

} // extern "C"
