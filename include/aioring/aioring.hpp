// SPDX-License-Identifier: Apache-2.0
// aioring: asyncio's transports and protocols in C++20 on io_uring. The umbrella header.
#pragma once

#include <aioring/address.hpp>
#include <aioring/callback.hpp>
#include <aioring/coro.hpp>
#include <aioring/datagram.hpp>
#include <aioring/error.hpp>
#include <aioring/future.hpp>
#include <aioring/loop.hpp>
#include <aioring/process.hpp>
#include <aioring/protocol.hpp>
#include <aioring/server.hpp>
#include <aioring/ssl.hpp>
#include <aioring/streams.hpp>
#include <aioring/subprocess.hpp>
#include <aioring/sync.hpp>
#include <aioring/task.hpp>
#include <aioring/task_group.hpp>
#include <aioring/threads.hpp>
#include <aioring/transport.hpp>
