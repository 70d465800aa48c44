// Scans many files on a pool of threads. Kept apart from the pure scanner because it reads
// files (syscalls) and starts threads.
//
// Every path is hostile (it comes from a plugin bundle): the final component is never followed
// when it is a symbolic link, only regular files are read, a FIFO or device never blocks or is
// read, and no file is read past max_file_bytes. Every failure, running out of memory included,
// is a result for that file; nothing escapes a worker thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "scan/scan.h"

namespace warden::scan {

// Why a file was not scanned. Stable ids; the strings are part of warden's interface (see
// read_error_id()).
enum class ReadError : uint8_t {
  None,
  OsError,      // open, fstat, fcntl or read failed; FileResult::err_no says why
  Link,         // the path names a symbolic link
  Directory,
  Fifo,
  Socket,
  CharDevice,
  BlockDevice,
  OtherType,    // any other file that is not a regular file
  TooLarge,     // more than max_file_bytes bytes
  NoMemory,     // an allocation failed while reading or scanning this file
  Internal,     // the scanner failed in some other way on this file
};

const char* read_error_id(ReadError e);

// Error results carry no text: nothing is allocated on the way to them (one of them is running
// out of memory), and the binding builds the message.
struct FileResult {
  bool read_ok = false;
  ReadError error = ReadError::None;
  int err_no = 0;  // with ReadError::OsError
  Result result;
};

// threads == 0 means one per online CPU. Results are in the order of paths.
std::vector<FileResult> scan_files(const std::vector<std::string>& paths, const Policy& policy,
                                   unsigned threads, uint64_t max_file_bytes);

}  // namespace warden::scan
