// What decoding one msgpack value would cost the host, found without decoding it.
//
// A frame from a sandbox is hostile input: a 16 MiB body of one-byte empty maps would become
// 16 million Python dicts (over a GiB) if it were simply decoded. decode_cost() walks the body
// once, without allocating per element, and adds up an upper estimate of the memory the
// decoded Python objects take (CPython 3.9-3.13 on 64-bit: object headers, the slots a list or
// dict holds, str and bytes data), stopping as soon as the estimate passes a budget. The
// caller decodes only a body whose estimate is within its budget.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ipc {

// What decode_cost() found.
enum class Cost : int64_t {
  kOverBudget = -1,  // the estimate passed the budget (the walk stopped there)
  kMalformed = -2,   // not exactly one msgpack value, or an extension type
  kTooDeep = -3,     // containers nested deeper than max_depth
};

// Upper estimates in bytes (see the header comment); kMaxPerByte is the most any one byte of
// a body can cost (an empty map in an array), so a body of n bytes never costs more than
// n * kMaxPerByte.
inline constexpr int64_t kMapCost = 240, kMapItemCost = 56, kArrayCost = 64,
                         kSlotCost = 8, kStrCost = 80, kBinCost = 40, kNumberCost = 40,
                         kMaxPerByte = kMapCost + kSlotCost;

// The estimate (>= 0) for the one msgpack value in data[0, size), or a negative Cost.
int64_t decode_cost(const uint8_t* data, size_t size, int64_t budget, uint32_t max_depth);

}  // namespace ipc
