# SPDX-License-Identifier: Apache-2.0
# Installs the built aioring into a temporary prefix, then builds and runs a consumer against
# it twice: the CMake project in tests/consumer (find_package) and the same main.cpp compiled
# by hand with `pkg-config --cflags --libs aioring` (with --static for a static build). Also
# checks what is installed (headers, aioring-load, the versioned shared library) and that
# find_package(aioring COMPONENTS ...) fails with its reason.
# cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -DSHARED=ON|OFF -DWITH_TOOLS=ON|OFF
#       -DPROJECT_VERSION=X.Y.Z -DCMAKE_CXX_COMPILER=... [-DCXX_FLAGS=...] -P install_consumer.cmake
foreach(v BUILD_DIR SOURCE_DIR WORK_DIR SHARED WITH_TOOLS PROJECT_VERSION)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "${v} is required")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
function(step)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
  set(step_out "${out}" PARENT_SCOPE)
endfunction()
function(expect_consumer_runs exe how)
  execute_process(COMMAND "${exe}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT out STREQUAL "Received: abc\n")
    message(FATAL_ERROR "the ${how} consumer failed (${rc}): ${out}\n${err}")
  endif()
endfunction()

step(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")

# What is installed.
if(NOT EXISTS "${prefix}/include/aioring/aioring.hpp")
  message(FATAL_ERROR "headers were not installed")
endif()
file(GLOB_RECURSE pcs "${prefix}/*/aioring.pc")
file(GLOB_RECURSE configs "${prefix}/*/aioringConfigVersion.cmake")
if(NOT pcs OR NOT configs)
  message(FATAL_ERROR "aioring.pc or the CMake version file was not installed")
endif()
list(GET pcs 0 pc)
get_filename_component(pcdir "${pc}" DIRECTORY)
get_filename_component(libdir "${pcdir}" DIRECTORY)
if(WITH_TOOLS)
  step("${prefix}/bin/aioring-load" --help)
  if(NOT step_out MATCHES "usage")
    message(FATAL_ERROR "the installed aioring-load --help printed: ${step_out}")
  endif()
endif()
string(REGEX MATCH "^[0-9]+\\.[0-9]+" soversion "${PROJECT_VERSION}")
if(SHARED)
  foreach(f libaioring.so libaioring.so.${soversion} libaioring.so.${PROJECT_VERSION})
    if(NOT EXISTS "${libdir}/${f}")
      message(FATAL_ERROR "${libdir}/${f} was not installed")
    endif()
  endforeach()
  step(readelf -d "${libdir}/libaioring.so.${PROJECT_VERSION}")
  if(NOT step_out MATCHES "SONAME[^\n]*libaioring\\.so\\.${soversion}]")
    message(FATAL_ERROR "the shared library's SONAME is not libaioring.so.${soversion}:\n${step_out}")
  endif()
elseif(NOT EXISTS "${libdir}/libaioring.a")
  message(FATAL_ERROR "${libdir}/libaioring.a was not installed")
endif()

# find_package.
set(cmake_args -G Ninja "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_BUILD_TYPE=Debug
    "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}" "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}")
step(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer" -B "${WORK_DIR}/build" ${cmake_args})
step(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
expect_consumer_runs("${WORK_DIR}/build/consumer" find_package)

# find_package with a component: refused, saying why.
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/consumer"
                        -B "${WORK_DIR}/build-component" ${cmake_args} -DCONSUMER_COMPONENT=tls
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(REGEX REPLACE "[ \n]+" " " err "${err}")
if(rc EQUAL 0 OR NOT err MATCHES "aioring has no components \\(asked for: tls\\)")
  message(FATAL_ERROR "find_package(aioring COMPONENTS tls) did not fail with its reason (${rc}):\n${err}")
endif()

# pkg-config, by hand.
set(pkg ${CMAKE_COMMAND} -E env "PKG_CONFIG_PATH=${pcdir}" pkg-config)
step(${pkg} --modversion aioring)
string(STRIP "${step_out}" version)
if(NOT version STREQUAL PROJECT_VERSION)
  message(FATAL_ERROR "pkg-config --modversion aioring: '${version}', expected ${PROJECT_VERSION}")
endif()
if(SHARED)
  step(${pkg} --cflags --libs aioring)
else()
  step(${pkg} --static --cflags --libs aioring)
endif()
separate_arguments(pc_flags UNIX_COMMAND "${step_out}")
separate_arguments(cxx_flags UNIX_COMMAND "${CXX_FLAGS}")
step("${CMAKE_CXX_COMPILER}" -std=c++20 ${cxx_flags} "${SOURCE_DIR}/tests/consumer/main.cpp"
     -o "${WORK_DIR}/pc_consumer" ${pc_flags} "-Wl,-rpath,${libdir}")
expect_consumer_runs("${WORK_DIR}/pc_consumer" pkg-config)
if(SHARED)
  step(readelf -d "${WORK_DIR}/pc_consumer")
  if(NOT step_out MATCHES "NEEDED[^\n]*libaioring\\.so\\.${soversion}]")
    message(FATAL_ERROR "the pkg-config consumer does not link libaioring.so.${soversion}")
  endif()
endif()
if(SHARED)
  set(kind shared)
else()
  set(kind static)
endif()
message(STATUS "${kind} aioring ${version}: find_package and pkg-config consumers ran")
