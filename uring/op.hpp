// SPDX-License-Identifier: Apache-2.0
// An in-flight io_uring operation: the base every completion target derives from.
// Its address is the SQE's user_data, so it must outlive its final completion.
#pragma once

namespace aioring::uring {

class Op {
public:
    // Called once per CQE; `flags` carries IORING_CQE_F_MORE / F_BUFFER as the kernel set them.
    virtual void complete(int res, unsigned flags) = 0;

protected:
    Op() = default;
    Op(const Op&) = delete;
    Op& operator=(const Op&) = delete;
    ~Op() = default;
};

}  // namespace aioring::uring
