#include "jail/request.h"

#include <cstring>

namespace warden::jail::request {

std::string encode(const std::string& cwd, const std::vector<std::string>& paths,
                   const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  std::string blob;
  auto add = [&blob](const std::string& s) {
    blob.append(s);
    blob.push_back('\0');
  };
  add(cwd);
  for (auto& s : paths) add(s);
  for (auto& s : argv) add(s);
  for (auto& s : env) add(s);
  Header h{kMagic, static_cast<uint32_t>(paths.size()), static_cast<uint32_t>(argv.size()),
           static_cast<uint32_t>(env.size()), blob.size()};
  std::string out(sizeof h, '\0');
  memcpy(out.data(), &h, sizeof h);
  out.append(blob);
  return out;
}

}  // namespace warden::jail::request
