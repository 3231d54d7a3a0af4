# SPDX-License-Identifier: Apache-2.0
# Configures aioring (library only) with each compiler and checks the GCC < 13 coroutine
# warning: shown with GCC 12, naming the GCC bug and both ways around it; absent with clang.
# cmake -DSOURCE_DIR=... -DWORK_DIR=... -DGCC=g++-12 -DCLANG=clang++-16 -P consumer_configure_warning.cmake
foreach(v SOURCE_DIR WORK_DIR GCC CLANG)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "${v} is required")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
function(configure compiler dir out_var)
  execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${dir}" -G Ninja
                          "-DCMAKE_CXX_COMPILER=${compiler}"
                          -DAIORING_BUILD_TESTS=OFF -DAIORING_BUILD_EXAMPLES=OFF
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "configuring with ${compiler} failed (${rc}):\n${out}\n${err}")
  endif()
  set(${out_var} "${err}" PARENT_SCOPE)
endfunction()

configure("${GCC}" "${WORK_DIR}/gcc" err)
string(REGEX REPLACE "[ \n]+" " " err "${err}")  # CMake wraps the message's lines
foreach(needle "GCC bug 100611" "destroyed twice" "clang" "name such arguments first")
  string(FIND "${err}" "${needle}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the GCC warning does not mention '${needle}':\n${err}")
  endif()
endforeach()
# Once: a second configure of the same build directory says nothing more.
configure("${GCC}" "${WORK_DIR}/gcc" again)
string(FIND "${again}" "100611" at)
if(NOT at EQUAL -1)
  message(FATAL_ERROR "the GCC warning came again on reconfigure:\n${again}")
endif()

configure("${CLANG}" "${WORK_DIR}/clang" err)
string(FIND "${err}" "100611" at)
if(NOT at EQUAL -1)
  message(FATAL_ERROR "clang got the GCC warning:\n${err}")
endif()
message(STATUS "configure warning: shown once with ${GCC}, not with ${CLANG}")
