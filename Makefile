# Makefile — C unit tests for the comfy-credits core (the Python module is
# built by setup.py). `make ctest` runs them; `make ctest-asan` runs them under
# AddressSanitizer + UndefinedBehaviorSanitizer; `make ctest-portable` runs them
# with the plain-C fallbacks that MSVC gets (no __int128, no __builtin_*_overflow:
# src/cc_platform.h; and cc_poller's poll() fallback instead of epoll), under the sanitizers too. `make ctest-tsan` runs them under
# ThreadSanitizer: the core is called at once from ComfyUI's worker thread, the
# event loop and the gateway's I/O thread, and runs its own writer thread.
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

.PHONY: ctest ctest-asan ctest-tsan ctest-portable clean
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

# halt_on_error: the first race fails the run (CI reads the exit code); second_deadlock_stack
# names both lock orders of a lock-order inversion. setarch -R: without address randomisation,
# as some kernels' randomised mappings are refused by gcc 12's TSan ("unexpected memory mapping").
ctest-tsan: $(BUILD)/ctest-tsan
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:history_size=4 setarch $(shell uname -m) -R $(BUILD)/ctest-tsan

$(BUILD)/ctest-tsan: $(CORE_SRC) $(TEST_SRC) $(wildcard src/*.h tests/c/*.h)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_BASE) -O1 -fno-omit-frame-pointer -fsanitize=thread -o $@ $(CORE_SRC) $(TEST_SRC) $(LIBS)

ctest-portable: $(BUILD)/ctest-portable
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(BUILD)/ctest-portable

$(BUILD)/ctest-portable: $(CORE_SRC) $(TEST_SRC) $(wildcard src/*.h tests/c/*.h)
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS_BASE) -DCC_NO_INT128 -DCC_NO_BUILTIN_OVERFLOW -DCC_NO_EPOLL -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -o $@ $(CORE_SRC) $(TEST_SRC) $(LIBS)

clean:
	rm -rf build
