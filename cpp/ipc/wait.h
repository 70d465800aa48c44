// Waiting for a socket to become readable, spinning first.
//
// A warm call is a synchronous round trip: one side sends and then waits for the other's
// answer, which usually comes within microseconds. Sleeping in the kernel for that answer
// means being woken by the other side, and on a virtual machine a wake-up of a task on
// another CPU goes through the hypervisor (an inter-processor interrupt) and costs tens of
// microseconds, several times the work of the call itself. Polling without sleeping for a
// short window catches the answer as it lands; after the window the wait sleeps as usual.
#pragma once

#include <cstdint>

namespace ipc {

enum class Wait : int {
  kTimeout = 0,   // the timeout ran out before fd became readable
  kSpun = 1,      // readable within the spin window (or hung up / in error: read says which)
  kSlept = 2,     // readable after sleeping in poll(2)
};

// poll(2) fd for POLLIN, without sleeping for up to spin_ns nanoseconds of CLOCK_MONOTONIC,
// then asleep for up to timeout_ms milliseconds from the call (-1: no limit). Returns the
// outcome, or -errno when poll(2) fails: -EINTR when a signal came, so that the caller can
// run its signal handlers (Python's) before it waits again.
int wait_readable(int fd, int64_t spin_ns, int timeout_ms);

}  // namespace ipc
