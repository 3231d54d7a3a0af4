// SPDX-License-Identifier: Apache-2.0
// `aioring-load merge FILE...`: the --json results of several runs (one per host) as one
// result of the same shape, counts summed, rates added, histograms merged bucket by bucket.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "result.hpp"

namespace aioring::load {

// Reads one --json result. False with `error` set (in words, without the file name) when it
// is not one, or its histogram is missing or of another schema.
bool read_result(const std::string& json, Result& out, std::string& error);

// Merges results read by read_result into one; `what` names each for errors ("b.json: ...").
bool merge_results(const std::vector<std::pair<std::string, Result>>& parts, Result& out,
                   std::string& error);

// The subcommand: args after "merge". Prints the merged JSON; returns the exit status (2 for
// usage, 1 for an unreadable or foreign file or a merged run that fails judge()).
int merge_main(const std::vector<std::string>& args);

}  // namespace aioring::load
