# Cross-compiling for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu (CI uses it to
# check that the NEON kernels build).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# Header-only dependencies (xsimd) come from the host's /usr/include.
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
# xsimd is header-only and architecture-independent; expose only its directory (not all of the
# host's /usr/include, whose libc headers would shadow the cross toolchain's).
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/host-headers)
file(CREATE_LINK /usr/include/xsimd ${CMAKE_BINARY_DIR}/host-headers/xsimd SYMBOLIC)
include_directories(SYSTEM ${CMAKE_BINARY_DIR}/host-headers)
