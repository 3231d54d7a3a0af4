// asyncio's write-buffer limits, shared by every transport kind: what set_write_buffer_limits'
// optional arguments mean, and their validation.
#pragma once

#include <aioring/transport.hpp>

#include <fmt/core.h>

#include <optional>
#include <stdexcept>
#include <utility>

namespace aioring::detail {

// (high, low) from set_write_buffer_limits' arguments: neither gives 64 KiB / 16 KiB, high alone
// sets low = high / 4, low alone sets high = 4 * low. low > high throws std::invalid_argument.
inline std::pair<std::size_t, std::size_t> resolve_write_limits(std::optional<std::size_t> high,
                                                                std::optional<std::size_t> low) {
    std::size_t h, l;
    if (!high && !low) {
        h = default_high_water;
        l = default_low_water;
    } else if (!high) {
        l = *low;
        h = 4 * l;
    } else {
        h = *high;
        l = low ? *low : h / 4;
    }
    if (l > h)
        throw std::invalid_argument(fmt::format("high ({}) must be >= low ({}) must be >= 0", h, l));
    return {h, l};
}

}  // namespace aioring::detail
