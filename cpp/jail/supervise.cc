#include "jail/supervise.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace warden::jail {

uint64_t monotonic_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

namespace {

// Appends what is readable; past the cap the bytes are read and dropped so the writer never
// blocks on a full pipe; *dropped counts them. Returns false at end of file.
bool drain(int fd, std::string* buf, size_t cap, bool* truncated, uint64_t* dropped) {
  char chunk[65536];
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n > 0) {
      size_t room = buf->size() < cap ? cap - buf->size() : 0;
      size_t take = static_cast<size_t>(n) < room ? static_cast<size_t>(n) : room;
      buf->append(chunk, take);
      if (take < static_cast<size_t>(n)) {
        *truncated = true;
        *dropped += static_cast<size_t>(n) - take;
      }
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN;  // any other error: treat as closed
  }
}

void set_nonblock(int fd) {
  if (fd >= 0) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

}  // namespace

int read_final_status(int status_fd, int timeout_ms, FinalStatus* out) {
  uint64_t deadline = timeout_ms < 0 ? 0 : monotonic_ns() + uint64_t(timeout_ms) * 1000000u;
  char buf[sizeof(FinalStatus)];
  size_t got = 0;
  while (got < sizeof buf) {
    int wait_ms = -1;
    if (timeout_ms >= 0) {
      uint64_t now = monotonic_ns();
      wait_ms = now >= deadline ? 0 : static_cast<int>((deadline - now + 999999) / 1000000);
    }
    struct pollfd p = {status_fd, POLLIN, 0};
    int rc = poll(&p, 1, wait_ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (rc == 0) return -ETIMEDOUT;
    ssize_t n = read(status_fd, buf + got, sizeof buf - got);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -errno;
    }
    if (n == 0) return 0;
    got += static_cast<size_t>(n);
  }
  memcpy(out, buf, sizeof buf);
  return 1;
}

int supervise(Child* child, int stdin_fd, const std::string& input, int out_fd, int err_fd,
              uint64_t deadline_ns, size_t cap, Outcome* o) {
  uint64_t start = monotonic_ns();
  set_nonblock(stdin_fd);
  set_nonblock(out_fd);
  set_nonblock(err_fd);
  set_nonblock(child->status_fd);
  size_t in_off = 0;
  if (stdin_fd >= 0 && input.empty()) {
    close(stdin_fd);
    stdin_fd = -1;
  }
  bool init_done = false;
  bool killed = false;
  char status_buf[sizeof(FinalStatus)];
  size_t status_got = 0;

  while (!init_done || out_fd >= 0 || err_fd >= 0) {
    struct pollfd p[5];
    int n = 0, i_in = -1, i_out = -1, i_err = -1, i_pid = -1, i_st = -1;
    if (stdin_fd >= 0) { i_in = n; p[n++] = {stdin_fd, POLLOUT, 0}; }
    if (out_fd >= 0) { i_out = n; p[n++] = {out_fd, POLLIN, 0}; }
    if (err_fd >= 0) { i_err = n; p[n++] = {err_fd, POLLIN, 0}; }
    if (!init_done) { i_pid = n; p[n++] = {child->pidfd, POLLIN, 0}; }
    if (child->status_fd >= 0) { i_st = n; p[n++] = {child->status_fd, POLLIN, 0}; }

    int timeout_ms = -1;
    if (deadline_ns && !killed) {
      uint64_t now = monotonic_ns();
      if (now >= deadline_ns) {
        // Before the kill, look at the writable area once: after it, the area is gone.
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/root/tmp", static_cast<int>(child->pid));
        struct statfs sfs;
        if (statfs(path, &sfs) == 0 && sfs.f_bfree == 0) o->disk_full_at_kill = true;
        syscall(SYS_pidfd_send_signal, child->pidfd, SIGKILL, nullptr, 0);
        killed = true;
        o->timed_out = true;
      } else {
        uint64_t left = deadline_ns - now;
        timeout_ms = static_cast<int>((left + 999999) / 1000000);
      }
    }
    if (init_done && timeout_ms < 0) timeout_ms = 1000;  // pipes close right after the init
    int rc = poll(p, static_cast<nfds_t>(n), timeout_ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (i_in >= 0 && p[i_in].revents) {
      if (p[i_in].revents & POLLOUT) {
        ssize_t w = write(stdin_fd, input.data() + in_off, input.size() - in_off);
        if (w > 0) in_off += static_cast<size_t>(w);
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || in_off == input.size()) {
          close(stdin_fd);
          stdin_fd = -1;
        }
      } else {  // POLLERR/POLLHUP: the reader is gone
        close(stdin_fd);
        stdin_fd = -1;
      }
    }
    if (i_out >= 0 && p[i_out].revents && !drain(out_fd, &o->out, cap, &o->out_truncated, &o->out_dropped)) {
      close(out_fd);
      out_fd = -1;
    }
    if (i_err >= 0 && p[i_err].revents && !drain(err_fd, &o->err, cap, &o->err_truncated, &o->err_dropped)) {
      close(err_fd);
      err_fd = -1;
    }
    if (i_st >= 0 && p[i_st].revents) {
      for (;;) {
        ssize_t r = read(child->status_fd, status_buf + status_got,
                         sizeof status_buf - status_got);
        if (r > 0) {
          status_got += static_cast<size_t>(r);
          if (status_got < sizeof status_buf) continue;
        } else if (r < 0 && errno == EINTR) {
          continue;
        } else if (r < 0 && errno == EAGAIN) {
          break;
        }
        close(child->status_fd);
        child->status_fd = -1;
        break;
      }
    }
    if (i_pid >= 0 && p[i_pid].revents) {
      int ws = 0;
      if (waitpid(child->pid, &ws, __WALL | WNOHANG) == child->pid) {
        o->init_wait_status = ws;
        init_done = true;
      }
    }
    if (init_done && rc == 0) break;  // nothing more arrived on the pipes within a second
  }
  if (stdin_fd >= 0) close(stdin_fd);
  if (out_fd >= 0) close(out_fd);
  if (err_fd >= 0) close(err_fd);
  if (child->status_fd >= 0) {
    // The record, if any, is already in the pipe: the init wrote it before exiting.
    for (;;) {
      ssize_t r = read(child->status_fd, status_buf + status_got, sizeof status_buf - status_got);
      if (r > 0 && (status_got += static_cast<size_t>(r)) < sizeof status_buf) continue;
      if (r < 0 && errno == EINTR) continue;
      break;
    }
    close(child->status_fd);
    child->status_fd = -1;
  }
  if (status_got == sizeof status_buf) {
    memcpy(&o->status, status_buf, sizeof status_buf);
    o->have_status = true;
  }
  close(child->pidfd);
  child->pidfd = -1;
  o->duration_s = static_cast<double>(monotonic_ns() - start) / 1e9;
  return 0;
}

}  // namespace warden::jail
