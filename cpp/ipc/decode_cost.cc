#include "ipc/decode_cost.h"

#include <vector>

namespace ipc {
namespace {

// Reads big-endian unsigned ints off a body, refusing to run past its end.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  size_t left() const { return static_cast<size_t>(end_ - p_); }
  bool take(size_t n, uint64_t* out) {
    if (left() < n) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | p_[i];
    p_ += n;
    *out = v;
    return true;
  }
  bool skip(uint64_t n) {
    if (left() < n) return false;
    p_ += n;
    return true;
  }
  const uint8_t* at() const { return p_; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// A str of n UTF-8 bytes holds at most n code points, stored with 1, 2 or 4 bytes each
// according to the widest one (PEP 393): lead bytes from 0xC4 start code points above
// U+00FF, from 0xF0 those above U+FFFF.
int64_t str_cost(const uint8_t* s, uint64_t n) {
  int width = 1;
  for (uint64_t i = 0; i < n; ++i) {
    if (s[i] >= 0xF0) return kStrCost + 4 * static_cast<int64_t>(n);
    if (s[i] >= 0xC4) width = 2;
  }
  return kStrCost + width * static_cast<int64_t>(n);
}

struct Walk {
  Reader in;
  std::vector<uint64_t> open;  // values still to read in each open container
  int64_t cost = 0;

  // A container of n values (a map of n pairs says 2n): each needs at least one byte.
  bool push(uint64_t n, int64_t c, uint32_t max_depth, int64_t* status) {
    if (n > in.left()) return (*status = static_cast<int64_t>(Cost::kMalformed), false);
    cost += c;
    if (n == 0) return true;
    if (open.size() >= max_depth) return (*status = static_cast<int64_t>(Cost::kTooDeep), false);
    open.push_back(n);
    return true;
  }
};

// One value's header (and a str's or bin's data); false with *status set when it ends the walk.
bool step(Walk& w, uint32_t max_depth, int64_t* status) {
  uint64_t b = 0, n = 0;
  const int64_t bad = static_cast<int64_t>(Cost::kMalformed);
  if (!w.in.take(1, &b)) return (*status = bad, false);
  if (b <= 0x7F || b >= 0xE0 || b == 0xC0 || b == 0xC2 || b == 0xC3) return true;
  if (b >= 0x80 && b <= 0x8F) return w.push(2 * (b & 0x0F), kMapCost + kMapItemCost * (b & 0x0F),
                                            max_depth, status);
  if (b >= 0x90 && b <= 0x9F) return w.push(b & 0x0F, kArrayCost + kSlotCost * (b & 0x0F),
                                            max_depth, status);
  int width = 0;
  switch (b) {
    case 0xCA: case 0xCB: case 0xCC: case 0xCD: case 0xCE: case 0xCF:
    case 0xD0: case 0xD1: case 0xD2: case 0xD3: {
      static const int sizes[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
      if (!w.in.skip(sizes[b - 0xCA])) return (*status = bad, false);
      w.cost += kNumberCost;
      return true;
    }
    case 0xA0 ... 0xBF: n = b & 0x1F; break;
    case 0xC4: case 0xD9: width = 1; break;
    case 0xC5: case 0xDA: case 0xDC: case 0xDE: width = 2; break;
    case 0xC6: case 0xDB: case 0xDD: case 0xDF: width = 4; break;
    default: return (*status = bad, false);  // 0xC1, and the extension types
  }
  if (width && !w.in.take(width, &n)) return (*status = bad, false);
  if (b == 0xDC || b == 0xDD) return w.push(n, kArrayCost + kSlotCost * static_cast<int64_t>(n),
                                            max_depth, status);
  if (b == 0xDE || b == 0xDF) {
    return w.push(2 * n, kMapCost + kMapItemCost * static_cast<int64_t>(n), max_depth, status);
  }
  const uint8_t* data = w.in.at();
  if (!w.in.skip(n)) return (*status = bad, false);
  w.cost += (b >= 0xC4 && b <= 0xC6) ? kBinCost + static_cast<int64_t>(n) : str_cost(data, n);
  return true;
}

}  // namespace

int64_t decode_cost(const uint8_t* data, size_t size, int64_t budget, uint32_t max_depth) {
  Walk w{Reader(data, size), {}, 0};
  int64_t status = 0;
  do {
    const size_t depth = w.open.size();
    if (!step(w, max_depth, &status)) return status;
    if (w.cost > budget) return static_cast<int64_t>(Cost::kOverBudget);
    if (w.open.size() > depth) continue;  // a container was opened: its values come next
    // A whole value was read: it fills a slot of the innermost open container, which, when
    // that was its last, is itself a whole value of the one around it.
    while (!w.open.empty() && --w.open.back() == 0) w.open.pop_back();
  } while (!w.open.empty());
  return w.in.left() == 0 ? w.cost : static_cast<int64_t>(Cost::kMalformed);
}

}  // namespace ipc
