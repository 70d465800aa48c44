#include "scan/batch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <new>
#include <system_error>
#include <thread>

namespace warden::scan {

const char* read_error_id(ReadError e) {
  switch (e) {
    case ReadError::None: return "none";
    case ReadError::OsError: return "os-error";
    case ReadError::Link: return "link";
    case ReadError::Directory: return "directory";
    case ReadError::Fifo: return "fifo";
    case ReadError::Socket: return "socket";
    case ReadError::CharDevice: return "char-device";
    case ReadError::BlockDevice: return "block-device";
    case ReadError::OtherType: return "special-file";
    case ReadError::TooLarge: return "too-large";
    case ReadError::NoMemory: return "no-memory";
    case ReadError::Internal: return "internal";
  }
  return "internal";
}

namespace {

// Closes the descriptor on every way out of read_file, an allocation failure in append included.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

ReadError type_error(mode_t mode) {
  if (S_ISLNK(mode)) return ReadError::Link;
  if (S_ISDIR(mode)) return ReadError::Directory;
  if (S_ISFIFO(mode)) return ReadError::Fifo;
  if (S_ISSOCK(mode)) return ReadError::Socket;
  if (S_ISCHR(mode)) return ReadError::CharDevice;
  if (S_ISBLK(mode)) return ReadError::BlockDevice;
  return ReadError::OtherType;
}

bool fail(FileResult& r, ReadError e, int err_no = 0) {
  r.error = e;
  r.err_no = err_no;
  return false;
}

// Reads the regular file at path into out, at most max_bytes of it.
//
// O_NOFOLLOW: a symbolic link as the final component fails with ELOOP instead of being followed
// (open(2)). It says nothing of the leading components: those of a path the caller named are
// the caller's, and the walk over a plugin bundle (warden.scan) descends through no link.
// O_NONBLOCK: opening a FIFO for reading otherwise blocks until a writer comes (fifo(7)), and
// some devices block in open too; the descriptor is checked with fstat before anything is read
// from it, and the flag is cleared once it is known to be a regular file.
// O_NOCTTY: a terminal device must not become the host's controlling terminal.
//
// st_size is never used to size anything: a file can grow after fstat, and /proc and sysfs
// files report 0. The read stops at max_bytes + 1 bytes, which is enough to know the file is
// over the limit.
bool read_file(const std::string& path, uint64_t max_bytes, std::string& out, FileResult& r) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (fd.get() < 0) {
    const int err = errno;
    // ELOOP is also what too many links among the leading components give, and opening a
    // socket gives ENXIO: lstat, which follows nothing, names the case.
    struct stat lst;
    if ((err == ELOOP || err == ENXIO) && ::lstat(path.c_str(), &lst) == 0 &&
        !S_ISREG(lst.st_mode))
      return fail(r, type_error(lst.st_mode));
    return fail(r, ReadError::OsError, err);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return fail(r, ReadError::OsError, errno);
  if (!S_ISREG(st.st_mode)) return fail(r, type_error(st.st_mode));
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
    return fail(r, ReadError::OsError, errno);

  const uint64_t want = max_bytes == UINT64_MAX ? max_bytes : max_bytes + 1;
  out.clear();
  char buf[1 << 16];
  while (out.size() < want) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(sizeof buf, want - out.size()));
    ssize_t n = ::read(fd.get(), buf, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(r, ReadError::OsError, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  if (out.size() > max_bytes) return fail(r, ReadError::TooLarge);
  return true;
}

}  // namespace

std::vector<FileResult> scan_files(const std::vector<std::string>& paths, const Policy& policy,
                                   unsigned threads, uint64_t max_file_bytes) {
  std::vector<FileResult> results(paths.size());
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = std::min<unsigned>(threads, static_cast<unsigned>(std::max<size_t>(paths.size(), 1)));
  std::atomic<size_t> next{0};
  // An exception leaving a thread's function calls std::terminate, which would take the host
  // process with it, so this is the one place in the scanner that catches: whatever goes wrong
  // with one file (an allocation that fails while reading or scanning it above all) becomes
  // that file's result. Nothing in the handlers allocates.
  auto worker = [&]() noexcept {
    std::string data;
    for (size_t i = next++; i < paths.size(); i = next++) {
      FileResult& r = results[i];
      try {
        r.read_ok = read_file(paths[i], max_file_bytes, data, r);
        if (r.read_ok) r.result = scan_source(data, InputKind::Bytes, policy);
      } catch (const std::bad_alloc&) {
        r.read_ok = false;
        r.error = ReadError::NoMemory;
        r.result = Result{};
        std::string().swap(data);
      } catch (...) {
        r.read_ok = false;
        r.error = ReadError::Internal;
        r.result = Result{};
      }
    }
  };
  // The calling thread works too, so that a host that cannot start another thread (a pids or
  // RLIMIT_NPROC limit: std::system_error) still gets every file scanned, only more slowly.
  std::vector<std::thread> pool;
  try {
    pool.reserve(threads - 1);
    for (unsigned k = 1; k < threads; ++k) pool.emplace_back(worker);
  } catch (const std::exception&) {
    // Fewer helpers than asked for; the ones that started are joined below.
  }
  worker();
  for (auto& t : pool) t.join();
  return results;
}

}  // namespace warden::scan
