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
LIBS    =

SRC     = $(filter-out src/luactr-init.c,$(wildcard src/*.c))
HDR     = $(wildcard src/*.h)
CORE    = $(BUILD)/luactr/core.so
INIT    = $(BUILD)/luactr/init
LUASRC  = $(wildcard lua/luactr/*.lua)

# Debian packages: build, test and benchmark needs
DEPS = gcc make pkg-config lua5.4 liblua5.4-dev libseccomp-dev libcap-dev \
       libbtrfsutil-dev btrfs-progs lua-busted lua-cjson busybox-static \
       luarocks util-linux bsdutils procps crun

BUSTED = $(LUA) /usr/bin/busted

.PHONY: all deps check check-unprivileged asan bench install clean

all: $(CORE) $(INIT)

$(CORE): $(SRC) $(HDR) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LIBFLAG) -o $@ $(SRC) $(LDFLAGS) $(LIBS)

# static: it runs inside containers whose root need not hold a libc
$(INIT): src/luactr-init.c Makefile
	@mkdir -p $(dir $@)
	$(CC) -O2 $(WARN) -static -o $@ src/luactr-init.c

deps:
	@missing=$$(for p in $(DEPS); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else echo "deps: all installed"; fi

check: all
	$(BUSTED) tests

check-unprivileged: all
	$(BUSTED) --exclude-tags=root tests

# The whole suite against a core built with AddressSanitizer and UBSan.
# lua5.4 itself is not instrumented, so the runtime is preloaded.
ASAN_BUILD = build-asan
asan:
	$(MAKE) BUILD=$(ASAN_BUILD) CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" all
	LUACTR_BUILDDIR=$(ASAN_BUILD) \
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(BUSTED) tests

bench: all
	$(LUA) bench/bench.lua

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LUADIR)/luactr $(DESTDIR)$(LIBDIR)/luactr
	install -m 0644 $(LUASRC) $(DESTDIR)$(LUADIR)/luactr/
	install -m 0755 $(CORE) $(DESTDIR)$(LIBDIR)/luactr/core.so
	install -m 0755 $(INIT) $(DESTDIR)$(LIBDIR)/luactr/init
	sed -e 's|^local INSTALLED = nil.*|local INSTALLED = { lua = "$(LUADIR)", lib = "$(LIBDIR)" }|' \
	    -e '1s|.*|#!/usr/bin/env $(LUA)|' \
	    bin/luactr > $(DESTDIR)$(BINDIR)/luactr
	chmod 0755 $(DESTDIR)$(BINDIR)/luactr

clean:
	rm -rf build build-asan
