# The install test: `cmake --install` a cumulus build into a scratch prefix,
# then configure, build and run tests/install/consumer against that prefix
# with find_package(cumulus).
#
# This file is both the registration (included by tests/CMakeLists.txt) and
# the script the test runs:
#   cmake -DBUILD_DIR=<a configured cumulus build> -DWORK_DIR=<scratch dir> \
#         [-DGENERATOR=<generator>] [-DCXX_COMPILER=<c++>] [-DCONFIG=<config>] -P tests/install/install.cmake
# tools/test runs it that way on the main build; ctest runs it as install_consumer.

if(CMAKE_SCRIPT_MODE_FILE)
  foreach(var BUILD_DIR WORK_DIR)
    if(NOT ${var})
      message(FATAL_ERROR "install.cmake: -D${var}=... is required")
    endif()
  endforeach()
  if(NOT CONFIG)
    set(CONFIG Release)
  endif()
  set(prefix ${WORK_DIR}/prefix)
  set(consumer_build ${WORK_DIR}/consumer-build)
  file(REMOVE_RECURSE ${WORK_DIR})

  set(configure_args -S ${CMAKE_CURRENT_LIST_DIR}/consumer -B ${consumer_build}
      -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=${CONFIG}
      # Only the scratch prefix may satisfy find_package, not a registry entry.
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
  if(GENERATOR)
    list(APPEND configure_args -G ${GENERATOR})
  endif()
  if(CXX_COMPILER)
    list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
  endif()

  execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} --config ${CONFIG}
                  COMMAND_ECHO STDOUT COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND ${CMAKE_COMMAND} ${configure_args} COMMAND_ECHO STDOUT COMMAND_ERROR_IS_FATAL ANY)

  # The package must have come from the prefix just installed.
  file(STRINGS ${consumer_build}/CMakeCache.txt found REGEX "^cumulus_DIR:")
  string(REGEX REPLACE "^[^=]*=" "" found "${found}")
  file(REAL_PATH "${prefix}" real_prefix)
  file(REAL_PATH "${found}" real_found)
  string(FIND "${real_found}" "${real_prefix}/" at)
  if(NOT at EQUAL 0)
    message(FATAL_ERROR "install.cmake: find_package(cumulus) used ${found}, not the install in ${prefix}")
  endif()

  execute_process(COMMAND ${CMAKE_COMMAND} --build ${consumer_build} --config ${CONFIG}
                  COMMAND_ECHO STDOUT COMMAND_ERROR_IS_FATAL ANY)
  find_program(app NAMES app PATHS ${consumer_build} ${consumer_build}/${CONFIG} NO_DEFAULT_PATH REQUIRED)
  execute_process(COMMAND ${app} COMMAND_ECHO STDOUT COMMAND_ERROR_IS_FATAL ANY)
  return()
endif()

# A sanitized build installs the same headers; its consumer would not be
# sanitized, so the test adds nothing there.
if(NOT CUMULUS_SANITIZE)
  add_test(NAME install_consumer
           COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${PROJECT_BINARY_DIR}
                   -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/install_consumer -DGENERATOR=${CMAKE_GENERATOR}
                   -DCXX_COMPILER=${CMAKE_CXX_COMPILER} -DCONFIG=$<CONFIG> -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(install_consumer PROPERTIES LABELS cpu TIMEOUT 300)
endif()
