# SPDX-License-Identifier: Apache-2.0
# Compiler checks. GCC before 13 miscompiles one coroutine pattern that aioring's API invites;
# say so once, at configure time, with the ways around it.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13
   AND NOT AIORING_GCC_COROUTINE_WARNED)
  message(WARNING
    "aioring: GCC ${CMAKE_CXX_COMPILER_VERSION} has a coroutine bug (GCC bug 100611): a class "
    "temporary built by aggregate initialization inside a co_await full-expression, or the "
    "captures of a lambda written there, is destroyed twice when the awaited operation throws, "
    "corrupting the heap. aioring's option structs have constructors, so `co_await "
    "start_server(cb, host, port, limit, ServerOptions{})` is safe; your own aggregates and "
    "capturing lambdas are not. Either build with clang (cmake --preset clang-debug, Debian "
    "package clang-16), or name such arguments first (`auto cb = [x](...) {...}; co_await f(cb);`). "
    "See the README, section Compilers.")
  set(AIORING_GCC_COROUTINE_WARNED ON CACHE INTERNAL "the GCC < 13 coroutine warning was shown")
endif()
