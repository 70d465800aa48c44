// Scans many files on a pool of threads. Kept apart from the pure scanner because it reads
// files (syscalls) and starts threads.
#pragma once

#include <string>
#include <vector>

#include "scan/scan.h"

namespace warden::scan {

struct FileResult {
  bool read_ok = false;
  std::string error;  // strerror text when the file could not be read
  Result result;
};

// threads == 0 means one per online CPU. Results are in the order of paths.
std::vector<FileResult> scan_files(const std::vector<std::string>& paths, const Policy& policy,
                                   unsigned threads);

}  // namespace warden::scan
