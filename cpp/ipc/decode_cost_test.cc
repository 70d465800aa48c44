// Unit test of decode_cost (decode_cost.h): exact walks of valid bodies, refusals of
// malformed, deep and expensive ones, and the per-byte bound.
#include "ipc/decode_cost.h"

#include <string>
#include <vector>

#include "testing/check.h"

namespace ipc {
namespace {

int64_t cost(const std::vector<uint8_t>& b, int64_t budget = 1 << 30, uint32_t depth = 64) {
  return decode_cost(b.data(), b.size(), budget, depth);
}

const int64_t kBad = static_cast<int64_t>(Cost::kMalformed);

void test_scalars() {
  CHECK_EQ(cost({0x00}), 0);
  CHECK_EQ(cost({0xC0}), 0);
  CHECK_EQ(cost({0xCD, 0x01, 0x02}), kNumberCost);
  CHECK_EQ(cost({0xCB, 0, 0, 0, 0, 0, 0, 0, 0}), kNumberCost);
  CHECK_EQ(cost({0xA2, 'a', 'b'}), kStrCost + 2);
  CHECK_EQ(cost({0xA3, 0xE2, 0x82, 0xAC}), kStrCost + 6);  // a euro sign: 2 bytes a char
  CHECK_EQ(cost({0xA4, 0xF0, 0x9F, 0x98, 0x80}), kStrCost + 16);
  CHECK_EQ(cost({0xC4, 0x02, 1, 2}), kBinCost + 2);
}

void test_containers() {
  CHECK_EQ(cost({0x80}), kMapCost);
  CHECK_EQ(cost({0x92, 0x90, 0x01}), 2 * kArrayCost + 2 * kSlotCost);
  CHECK_EQ(cost({0x81, 0xA1, 'k', 0x91, 0xC0}),
           kMapCost + kMapItemCost + kStrCost + 1 + kArrayCost + kSlotCost);
  CHECK_EQ(cost({0xDC, 0x00, 0x02, 0x01, 0x02}), kArrayCost + 2 * kSlotCost);
}

void test_refusals() {
  CHECK_EQ(cost({}), kBad);
  CHECK_EQ(cost({0x92, 0x01}), kBad);                        // a value missing
  CHECK_EQ(cost({0x01, 0x02}), kBad);                        // one value too many
  CHECK_EQ(cost({0xC1}), kBad);
  CHECK_EQ(cost({0xD4, 0x01, 0x00}), kBad);                  // an extension type
  CHECK_EQ(cost({0xDD, 0xFF, 0xFF, 0xFF, 0xFF, 0x00}), kBad);  // 4G values in 1 byte
  CHECK_EQ(cost({0xDB, 0x00, 0x00, 0x10, 0x00, 'a'}), kBad);  // a str past the end
  std::vector<uint8_t> deep(100, 0x91);
  deep.push_back(0xC0);
  CHECK_EQ(cost(deep), static_cast<int64_t>(Cost::kTooDeep));
  CHECK(cost(deep, 1 << 30, 200) > 0);
  std::vector<uint8_t> maps = {0xDD, 0x00, 0x10, 0x00, 0x00};
  maps.insert(maps.end(), 1 << 20, 0x80);
  CHECK_EQ(cost(maps, 1 << 20), static_cast<int64_t>(Cost::kOverBudget));
  const int64_t whole = cost(maps);
  CHECK_EQ(whole, kArrayCost + kSlotCost * (1 << 20) + kMapCost * (1 << 20));
  CHECK(whole <= kMaxPerByte * static_cast<int64_t>(maps.size()));
}

}  // namespace
}  // namespace ipc

int main() {
  ipc::test_scalars();
  ipc::test_containers();
  ipc::test_refusals();
  return warden::testing::finish("decode_cost_test");
}
