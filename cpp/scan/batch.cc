#include "scan/batch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

namespace warden::scan {
namespace {

bool read_file(const std::string& path, std::string& out, std::string& error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = std::strerror(errno);
    return false;
  }
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    error = std::strerror(EISDIR);
    return false;
  }
  out.clear();
  if (st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return true;
}

}  // namespace

std::vector<FileResult> scan_files(const std::vector<std::string>& paths, const Policy& policy,
                                   unsigned threads) {
  std::vector<FileResult> results(paths.size());
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = std::min<unsigned>(threads, static_cast<unsigned>(std::max<size_t>(paths.size(), 1)));
  std::atomic<size_t> next{0};
  auto worker = [&] {
    std::string data;
    for (size_t i = next++; i < paths.size(); i = next++) {
      FileResult& r = results[i];
      r.read_ok = read_file(paths[i], data, r.error);
      if (r.read_ok) r.result = scan_source(data, InputKind::Bytes, policy);
    }
  };
  if (threads <= 1) {
    worker();
    return results;
  }
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (unsigned k = 0; k < threads; ++k) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  return results;
}

}  // namespace warden::scan
