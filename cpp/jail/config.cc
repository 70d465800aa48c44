#include "jail/config.h"

#include <cstdio>
#include <string>

namespace warden::jail {

void SpawnConfig::prepare() {
  // fds::arrange puts stdio at 0-2, the passed descriptors at 3.., then the report pipe, the
  // status pipe, in exec mode the request socket, and warden-init itself.
  int report_fd = 3 + static_cast<int>(pass_fds.size());
  if (fork_mode) {
    init_argv = {"warden-init", "--worker", std::to_string(report_fd),
                 std::to_string(report_fd + 1)};
  } else {
    init_argv = {"warden-init", std::to_string(report_fd), std::to_string(report_fd + 1),
                 std::to_string(report_fd + 2)};
  }
  init_argv_ptrs.clear();
  for (auto& a : init_argv) init_argv_ptrs.push_back(a.data());
  init_argv_ptrs.push_back(nullptr);

  // Inside 0 is needed only during set-up (to own what the set-up creates); the command runs
  // as inside_id, which maps to the sandbox's own host id, which owns nothing on the host.
  char buf[128];
  snprintf(buf, sizeof buf, "0 %u 1\n%u %u 1\n", outside_base, inside_id, host_id);
  uid_map = buf;
  gid_map = buf;

  snprintf(buf, sizeof buf, "size=%llu,mode=0755,uid=0,gid=0",
           static_cast<unsigned long long>(disk_bytes));
  writable_opts = buf;
}

}  // namespace warden::jail
