#!/bin/sh
# `make install` delivers what it promises: the header, shared and static libraries, a
# relocatable pkg-config file and a CMake package that a consumer builds against.
#   sh tests/install_test.sh BUILD_DIR
set -eu
BUILD=$1
TMP=$(mktemp -d /tmp/shmstore-inst-XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM
cmake --install "$BUILD" --prefix "$TMP/prefix" >/dev/null
cat > "$TMP/app.c" <<'C'
#include <shmstore.h>
#include <stdio.h>
#include <unistd.h>
int main(void)
{
    char name[64];
    shmstore_t *s;
    snprintf(name, sizeof(name), "t_install_%d", (int)getpid());
    int r = shmstore_open(name, SHMSTORE_O_CREATE | SHMSTORE_O_EXCL, NULL, &s);
    if (r < 0) {
        fprintf(stderr, "open: %s\n", shmstore_strerror(r));
        return 1;
    }
    r = shmstore_put(s, "x", NULL, "hi", 2, 0);
    shmstore_close(s);
    shmstore_unlink(name, NULL);
    return r < 0;
}
C
pass=0 fail=0
PKG_CONFIG_PATH="$TMP/prefix/lib/pkgconfig"
export PKG_CONFIG_PATH
if cc "$TMP/app.c" $(pkg-config --cflags --libs shmstore) -Wl,-rpath,"$TMP/prefix/lib" \
        -o "$TMP/app_pc" && "$TMP/app_pc"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
mkdir "$TMP/cm"
cat > "$TMP/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.25)
project(app C)
find_package(shmstore 0.1 REQUIRED)
add_executable(app_cmake $TMP/app.c)
target_link_libraries(app_cmake shmstore::shmstore)
CM
if cmake -S "$TMP/cm" -B "$TMP/cm/b" -DCMAKE_PREFIX_PATH="$TMP/prefix" >/dev/null &&
        cmake --build "$TMP/cm/b" >/dev/null && "$TMP/cm/b/app_cmake"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1))
fi
echo "install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
