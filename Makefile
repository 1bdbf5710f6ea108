# luactr -- build, test, install.
#
# LuaRocks-friendly: CFLAGS, LIBFLAG, LUA_INCDIR, PREFIX, BINDIR, LUADIR
# and LIBDIR may all be given on the command line.

LUA         ?= lua5.4
LUA_INCDIR  ?= /usr/include/lua5.4
CC          ?= cc
CFLAGS      ?= -O2 -g
LIBFLAG     ?= -shared
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
LUADIR      ?= $(PREFIX)/share/lua/5.4
LIBDIR      ?= $(PREFIX)/lib/lua/5.4
BUILD       ?= build

WARN    = -std=c11 -Wall -Wextra -Wshadow -Wmissing-prototypes \
          -Wstrict-prototypes -Werror=implicit-function-declaration
ALL_CFLAGS = $(CFLAGS) $(WARN) -fPIC -I$(LUA_INCDIR)
LIBS    = -lbtrfsutil -lnettle -lcap -lseccomp

SRC     = $(filter-out src/luactr-stage.c src/luactr-monitor.c,$(wildcard src/*.c))
HDR     = $(wildcard src/*.h)
CORE    = $(BUILD)/luactr/core.so
STAGE   = $(BUILD)/luactr/stage
MONITOR = $(BUILD)/luactr/monitor
LUASRC  = $(wildcard lua/luactr/*.lua lua/luactr/*/*.lua)
LUAC    ?= luac5.4
# the modules precompiled, for bin/luactr run in place (see bin/luactr)
LUABC   = $(patsubst lua/%,$(BUILD)/lua/%,$(LUASRC))

BUSTED = $(LUA) /usr/bin/busted

.PHONY: all deps check check-unprivileged asan bench install clean

all: $(CORE) $(STAGE) $(MONITOR) $(LUABC)

$(BUILD)/lua/%.lua: lua/%.lua
	@mkdir -p $(dir $@)
	$(LUAC) -o $@ $<

$(CORE): $(SRC) $(HDR) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LIBFLAG) -o $@ $(SRC) $(LDFLAGS) $(LIBS)

# The stage runs inside containers (whose root need not hold a libc),
# exec'd from a memfd copy made at every start: static, and on x86_64 and
# aarch64 freestanding, a few KiB with no libc at all (luactr-stage.c).
FREESTANDING = -nostdlib -ffreestanding -fno-stack-protector -fno-pie -no-pie \
  -fno-asynchronous-unwind-tables -fno-tree-loop-distribute-patterns \
  -Wl,-z,noexecstack -Wl,--build-id=none
STAGE_FLAGS = $(if $(filter x86_64-% aarch64-%,$(shell $(CC) -dumpmachine)),$(FREESTANDING))
$(STAGE): src/luactr-stage.c src/luactr-stage.h Makefile
	@mkdir -p $(dir $@)
	$(CC) -O2 $(WARN) -static $(STAGE_FLAGS) -o $@ src/luactr-stage.c

# static too: one per detached container, so its private memory counts
$(MONITOR): src/luactr-monitor.c src/relay.c src/relay.h Makefile
	@mkdir -p $(dir $@)
	$(CC) -O2 $(WARN) -static -o $@ src/luactr-monitor.c src/relay.c

deps:
	sh scripts/deps

check: all
	$(BUSTED) tests

check-unprivileged: all
	$(BUSTED) --exclude-tags=root tests

# The whole suite against a core built with AddressSanitizer and UBSan.
# lua5.4 itself is not instrumented, so the runtime is preloaded. The
# #network test is left out: it runs debootstrap, whose wget hangs at exit
# with ASan preloaded; it is host programs, not our code, that it runs.
# So are the #rlimit tests: they limit the address space (ulimit -v),
# which ASan's shadow memory cannot live with; they run only Lua.
ASAN_BUILD = build-asan
asan:
	$(MAKE) BUILD=$(ASAN_BUILD) CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" all
	LUACTR_BUILDDIR=$(ASAN_BUILD) \
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(BUSTED) --cpath='$(ASAN_BUILD)/?.so' --exclude-tags=network,rlimit tests

bench: all
	$(LUA) bench/bench.lua
	$(LUA) bench/detached.lua
	$(LUA) bench/copy.lua

# The installed bin/luactr's shebang: LUA's absolute path, found at install
# time (no exec of env at each start).
LUA_BIN = $(shell command -v $(LUA) 2>/dev/null)
# Where the installed bin/luactr looks for the modules when it runs: LUADIR
# and LIBDIR, unless something moves them after the install (LuaRocks moves
# them from its rock directory into the tree; the rockspec says where).
RUN_LUADIR ?= $(LUADIR)
RUN_LIBDIR ?= $(LIBDIR)

install: all
	@case "$(LUA_BIN)" in /*) ;; *) echo "install: no Lua interpreter '$(LUA)' found (give LUA=/path/to/lua5.4)" >&2; exit 1;; esac
	@$(LUA_BIN) -e 'if _VERSION < "Lua 5.4" then io.stderr:write("install: luactr needs Lua 5.4, $(LUA_BIN) is ", _VERSION, "\n") os.exit(1) end'
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/luactr
	for f in $(patsubst lua/%,%,$(LUASRC)); do \
	  install -D -m 0644 lua/$$f $(DESTDIR)$(LUADIR)/$$f || exit 1; \
	done
	install -m 0755 $(CORE) $(DESTDIR)$(LIBDIR)/luactr/core.so
	install -m 0755 $(STAGE) $(DESTDIR)$(LIBDIR)/luactr/stage
	install -m 0755 $(MONITOR) $(DESTDIR)$(LIBDIR)/luactr/monitor
	sed -e 's|^local INSTALLED = nil.*|local INSTALLED = { lua = "$(abspath $(RUN_LUADIR))", lib = "$(abspath $(RUN_LIBDIR))" }|' \
	    -e '1s|.*|#!$(LUA_BIN)|' \
	    bin/luactr > $(DESTDIR)$(BINDIR)/luactr
	chmod 0755 $(DESTDIR)$(BINDIR)/luactr

clean:
	rm -rf build build-asan
