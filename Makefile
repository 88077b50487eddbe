# Makefile — C unit tests for the comfy-credits core (the Python module is
# built by setup.py). `make ctest` runs them; `make ctest-asan` runs them under
# AddressSanitizer + UndefinedBehaviorSanitizer; `make ctest-portable` runs them
# with the plain-C fallbacks that MSVC gets (no __int128, no __builtin_*_overflow:
# src/cc_platform.h), under the sanitizers too.
CC ?= gcc
PKGS = libcjson sqlite3 libcurl openssl
# PostgreSQL (farm mode, src/store_pg.c) when libpq-dev is installed.
ifeq ($(shell pkg-config --exists libpq && echo yes),yes)
PKGS += libpq
PQ_DEFS = -DCC_HAVE_LIBPQ
endif
WARN = -Wall -Wextra -Werror
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE $(PQ_DEFS) $(WARN) -g -Isrc $(shell pkg-config --cflags $(PKGS))
LIBS = $(shell pkg-config --libs $(PKGS)) -lpthread
CORE_SRC = $(filter-out src/py_%.c,$(wildcard src/*.c))
TEST_SRC = $(wildcard tests/c/*.c)
BUILD = build/c

.PHONY: ctest ctest-asan ctest-portable clean
ctest: $(BUILD)/ctest
	$(BUILD)/ctest

ctest-asan: $(BUILD)/ctest-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(BUILD)/ctest-asan

$(BUILD)/ctest: $(CORE_SRC) $(TEST_SRC) $(wildcard src/*.h tests/c/*.h)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_BASE) -O3 -o $@ $(CORE_SRC) $(TEST_SRC) $(LIBS)

$(BUILD)/ctest-asan: $(CORE_SRC) $(TEST_SRC) $(wildcard src/*.h tests/c/*.h)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_BASE) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -o $@ $(CORE_SRC) $(TEST_SRC) $(LIBS)

ctest-portable: $(BUILD)/ctest-portable
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(BUILD)/ctest-portable

$(BUILD)/ctest-portable: $(CORE_SRC) $(TEST_SRC) $(wildcard src/*.h tests/c/*.h)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_BASE) -DCC_NO_INT128 -DCC_NO_BUILTIN_OVERFLOW -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -o $@ $(CORE_SRC) $(TEST_SRC) $(LIBS)

clean:
	rm -rf build
