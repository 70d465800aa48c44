// Capabilities: everything goes, in every set, before the command runs.
#pragma once

#include <cstdint>

namespace warden::jail::caps {

// Child, while still privileged in the namespace: lock the securebits that keep uid 0 from
// regaining capabilities, empty the bounding and ambient sets (PR_CAPBSET_DROP needs
// CAP_SETPCAP, so this runs before the identity change).
int drop_bounding(uint32_t last_cap);

// Child, after the identity change: empty the permitted, effective and inheritable sets.
int clear_all();

}  // namespace warden::jail::caps
