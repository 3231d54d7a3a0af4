// SPDX-License-Identifier: Apache-2.0
// Quantiles and merging for the load tool's log-linear latency histogram.
#include "histogram.hpp"

#include <algorithm>
#include <cmath>

namespace aioring::load {

std::uint64_t Histogram::bucket_low(std::size_t i) {
    if (i < linear_limit) return i;
    const std::size_t j = i - linear_limit;
    const unsigned octave = static_cast<unsigned>(j >> sub_bits);  // 0 for [256, 512)
    const std::uint64_t sub = (j & ((1u << sub_bits) - 1)) + (1u << sub_bits);
    return sub << (octave + 1);
}

std::uint64_t Histogram::bucket_width(std::size_t i) {
    if (i < linear_limit) return 1;
    return std::uint64_t{1} << (((i - linear_limit) >> sub_bits) + 1);
}

void Histogram::merge(const Histogram& o) {
    for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    max_ = std::max(max_, o.max_);
    min_ = std::min(min_, o.min_);
}

void Histogram::add_to_bucket(std::size_t i, std::uint64_t n) {
    if (n == 0) return;
    counts_[i] += n;
    total_ += n;
    min_ = std::min(min_, bucket_low(i));
    max_ = std::max(max_, bucket_low(i) + bucket_width(i) - 1);
}

std::uint64_t Histogram::count_up_to(std::uint64_t ns) const {
    const std::size_t last = index_of(std::min(ns, max_trackable));
    std::uint64_t n = 0;
    for (std::size_t i = 0; i <= last; ++i) n += counts_[i];
    return n;
}

void Histogram::reset() {
    std::fill(counts_.begin(), counts_.end(), 0);
    total_ = 0;
    max_ = 0;
    min_ = ~std::uint64_t{0};
}

std::uint64_t Histogram::value_at_quantile(double q) const {
    if (total_ == 0) return 0;
    q = std::clamp(q, 0.0, 1.0);
    // The rank of the sample wanted, 1-based, as the exact percentile of sorted samples takes it.
    std::uint64_t rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
        seen += counts_[i];
        if (seen >= rank) {
            const std::uint64_t w = bucket_width(i);
            const std::uint64_t mid = bucket_low(i) + (w - 1) / 2;
            return std::clamp(mid, min(), max_);
        }
    }
    return max_;
}

double Histogram::mean() const {
    if (total_ == 0) return 0;
    long double sum = 0;
    for (std::size_t i = 0; i < bucket_count; ++i)
        if (counts_[i])
            sum += static_cast<long double>(counts_[i]) *
                   (static_cast<long double>(bucket_low(i)) + (bucket_width(i) - 1) / 2.0L);
    return static_cast<double>(sum / total_);
}

}  // namespace aioring::load
