// Unit test of the spawn config (config.h): its defaults, and what prepare() generates for
// the child, which may not allocate: the uid/gid maps, the writable tmpfs's options, and
// warden-init's argv with the descriptor numbers fds::arrange gives.
#include "jail/config.h"

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "testing/check.h"

namespace warden::jail {
namespace {

void test_defaults() {
  SpawnConfig cfg;
  CHECK_EQ(cfg.cwd, "/workspace");
  CHECK_EQ(cfg.hostname, "warden");
  CHECK_EQ(cfg.inside_id, 1000u);
  CHECK_EQ(cfg.outside_base, 2000000000u);
  CHECK_EQ(cfg.disk_bytes, uint64_t{64} << 20);
  CHECK_EQ(cfg.open_files, 256u);
  CHECK_EQ(cfg.file_size_bytes, 0u);
  CHECK_EQ(cfg.cpu_time_s, 0u);
  // No descriptor is taken for granted: each is -1 until the caller gives one.
  CHECK_EQ(cfg.stdin_fd, -1);
  CHECK_EQ(cfg.stdout_fd, -1);
  CHECK_EQ(cfg.stderr_fd, -1);
  CHECK_EQ(cfg.cgroup_fd, -1);
  CHECK_EQ(cfg.netns_fd, -1);
  CHECK_EQ(cfg.init_fd, -1);
  CHECK(cfg.pass_fds.empty(), "pass_fds");
  CHECK(!cfg.fork_mode && !cfg.hold_mount_ns, "modes");
  // Fail closed: no seccomp program until one is compiled and given.
  CHECK(cfg.seccomp.empty(), "seccomp");
  CHECK(cfg.mounts.empty() && cfg.writable.empty(), "a plan before plan_root");
}

void test_id_maps() {
  // Inside 0 maps to outside_base, used only by the set-up; inside_id maps to the sandbox's
  // own host id (warden.host.identity hands one out per live sandbox).
  SpawnConfig cfg;
  cfg.host_id = 2000000042u;
  cfg.prepare();
  CHECK_EQ(cfg.uid_map, "0 2000000000 1\n1000 2000000042 1\n");
  CHECK_EQ(cfg.gid_map, cfg.uid_map);

  cfg.inside_id = 1234;
  cfg.outside_base = 100000;
  cfg.host_id = 100007;
  cfg.prepare();
  CHECK_EQ(cfg.uid_map, "0 100000 1\n1234 100007 1\n");
  CHECK_EQ(cfg.gid_map, "0 100000 1\n1234 100007 1\n");

  cfg.inside_id = 65534;
  cfg.outside_base = 4000000000u;
  cfg.host_id = 4000065535u;
  cfg.prepare();
  CHECK_EQ(cfg.uid_map, "0 4000000000 1\n65534 4000065535 1\n");
}

void test_writable_options() {
  SpawnConfig cfg;
  cfg.prepare();
  CHECK_EQ(cfg.writable_opts, "size=67108864,mode=0755,uid=0,gid=0");
  cfg.disk_bytes = uint64_t{1} << 40;
  cfg.prepare();
  CHECK_EQ(cfg.writable_opts, "size=1099511627776,mode=0755,uid=0,gid=0");
}

// argv as strings, checking that the pointer array matches it and ends with nullptr.
std::vector<std::string> init_argv(const SpawnConfig& cfg) {
  CHECK_EQ(cfg.init_argv_ptrs.size(), cfg.init_argv.size() + 1);
  for (size_t i = 0; i < cfg.init_argv.size() && i < cfg.init_argv_ptrs.size(); ++i)
    CHECK(cfg.init_argv_ptrs[i] == cfg.init_argv[i].data(), "argv[%zu] points elsewhere", i);
  if (!cfg.init_argv_ptrs.empty())
    CHECK(cfg.init_argv_ptrs.back() == nullptr, "argv does not end with nullptr");
  return cfg.init_argv;
}

void test_init_argv() {
  // Descriptors 0-2 are stdio, the passed ones follow, then the report pipe, the status pipe
  // and the request socket: warden-init is told their numbers.
  SpawnConfig cfg;
  cfg.prepare();
  CHECK(init_argv(cfg) == (std::vector<std::string>{"warden-init", "3", "4", "5"}),
        "argv without passed descriptors");

  cfg.pass_fds = {17, 4, 9};
  cfg.prepare();
  CHECK(init_argv(cfg) == (std::vector<std::string>{"warden-init", "6", "7", "8"}),
        "argv with three passed descriptors");

  // prepare() again does not pile up pointers.
  cfg.prepare();
  CHECK_EQ(cfg.init_argv_ptrs.size(), 5u);

  // The config is handed on by value once prepared (the binding's to_config returns it):
  // a move keeps the pointers on the strings they point into.
  SpawnConfig moved = std::move(cfg);
  CHECK(init_argv(moved) == (std::vector<std::string>{"warden-init", "6", "7", "8"}),
        "argv after a move");
  CHECK(std::strcmp(moved.init_argv_ptrs[1], "6") == 0, "argv[1] after a move");
}

void test_fork_mode() {
  // The worker returns to the caller; warden-init, its parent, is told so, and gets the
  // report and status pipes (no request socket).
  SpawnConfig cfg;
  cfg.fork_mode = true;
  cfg.pass_fds = {5};
  cfg.host_id = 2000000042u;
  cfg.prepare();
  CHECK(init_argv(cfg) == (std::vector<std::string>{"warden-init", "--worker", "4", "5"}),
        "init argv in fork mode");
  // The maps and the tmpfs options are the same in both modes.
  CHECK_EQ(cfg.uid_map, "0 2000000000 1\n1000 2000000042 1\n");
  CHECK_EQ(cfg.writable_opts, "size=67108864,mode=0755,uid=0,gid=0");
}

}  // namespace
}  // namespace warden::jail

int main() {
  using namespace warden::jail;
  test_defaults();
  test_id_maps();
  test_writable_options();
  test_init_argv();
  test_fork_mode();
  return warden::testing::finish("config_test");
}
