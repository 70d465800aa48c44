#include "jail/uts.h"

#include <unistd.h>

#include <cerrno>

namespace warden::jail::uts {

int init_ns(const SpawnConfig& cfg) {
  if (sethostname(cfg.hostname.data(), cfg.hostname.size()) != 0) return -errno;
  return 0;
}

}  // namespace warden::jail::uts
