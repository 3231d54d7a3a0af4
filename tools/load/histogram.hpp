// SPDX-License-Identifier: Apache-2.0
// A log-linear latency histogram in the manner of HdrHistogram: exact below 256 ns, then 128
// equal sub-buckets per power of two, so every recorded value is reported within 1/256 of
// itself (well inside 1%) from 1 ns up to about 18 minutes. Recording is a shift and an add.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace aioring::load {

class Histogram {
public:
    static constexpr unsigned sub_bits = 7;                        // 128 sub-buckets per octave
    static constexpr std::uint64_t linear_limit = 2u << sub_bits;  // exact below 256
    static constexpr unsigned max_exponent = 40;                   // 2^40 ns ~ 18 min
    static constexpr std::uint64_t max_trackable = (std::uint64_t{1} << max_exponent) - 1;
    static constexpr std::size_t bucket_count =
        linear_limit + (max_exponent - sub_bits - 1) * (std::size_t{1} << sub_bits);

    Histogram() : counts_(bucket_count, 0) {}

    // Records one value in nanoseconds; larger values are clamped to max_trackable.
    void record(std::uint64_t ns) {
        if (ns > max_trackable) [[unlikely]]
            ns = max_trackable;
        ++counts_[index_of(ns)];
        ++total_;
        if (ns > max_) max_ = ns;
        if (ns < min_) min_ = ns;
    }
    void merge(const Histogram& o);
    void reset();

    std::uint64_t count() const { return total_; }
    std::uint64_t max() const { return max_; }
    std::uint64_t min() const { return total_ ? min_ : 0; }
    // The value at quantile q in [0, 1] (the smallest value with at least q of the samples at or
    // below it), as the middle of its bucket, never above the recorded maximum; 0 when empty.
    std::uint64_t value_at_quantile(double q) const;
    double mean() const;

    static std::size_t index_of(std::uint64_t ns) {
        if (ns < linear_limit) return static_cast<std::size_t>(ns);
        const unsigned e = 63u - static_cast<unsigned>(__builtin_clzll(ns));  // ns in [2^e, 2^e+1)
        const unsigned shift = e - sub_bits;
        return static_cast<std::size_t>(linear_limit + (e - sub_bits - 1) * (1u << sub_bits) +
                                        ((ns >> shift) - (1u << sub_bits)));
    }
    // The lowest value and the width of bucket `i`.
    static std::uint64_t bucket_low(std::size_t i);
    static std::uint64_t bucket_width(std::size_t i);

    // Bucket by bucket, for writing the histogram out and reading it back losslessly.
    std::uint64_t count_at(std::size_t i) const { return counts_[i]; }
    // Samples in the buckets up to and including the one holding `ns`.
    std::uint64_t count_up_to(std::uint64_t ns) const;
    // Adds `n` samples to bucket `i` (their exact values are not known: min and max widen to
    // the bucket's bounds unless set_min_max follows).
    void add_to_bucket(std::size_t i, std::uint64_t n);
    void set_min_max(std::uint64_t min, std::uint64_t max) {
        min_ = min;
        max_ = max;
    }

private:
    std::vector<std::uint64_t> counts_;
    std::uint64_t total_ = 0;
    std::uint64_t max_ = 0;
    std::uint64_t min_ = ~std::uint64_t{0};
};

}  // namespace aioring::load
