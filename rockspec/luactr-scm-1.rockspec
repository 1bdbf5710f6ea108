-- luactr, built with its own Makefile: `luarocks make --lua-version=5.4
-- rockspec/luactr-scm-1.rockspec` from the checkout's top.
rockspec_format = "3.0"
package = "luactr"
version = "scm-1"

source = {
  url = "git+file:///work/main",  -- placeholder: `luarocks make` builds the local tree
}

description = {
  summary = "A container runtime in C and Lua 5.4",
  detailed = [[
luactr runs a command in a container made from a root filesystem, with
Linux namespaces and mounts: a small C core (luactr.core), a Lua layer
(luactr) and the `luactr` command. Running containers needs root.
]],
}

supported_platforms = { "linux" }

dependencies = {
  "lua >= 5.4",
}

build = {
  type = "make",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA = "$(LUA)",
    BUILD = "build/luarocks",  -- not the checkout's own build/
  },
  install_variables = {
    BUILD = "build/luarocks",
    PREFIX = "$(PREFIX)",
    BINDIR = "$(BINDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    LUA = "$(LUA)",
    -- LuaRocks moves LUADIR and LIBDIR's files into the tree once `make
    -- install` is done: bin/luactr is told where they end up.
    RUN_LUADIR = "$(SCRIPTS_DIR)/../share/lua/5.4",
    RUN_LIBDIR = "$(SCRIPTS_DIR)/../lib/lua/5.4",
  },
}

-- bin/luactr finds its modules by itself (see RUN_LUADIR): installed as it
-- is, it starts with no shell wrapper and no luarocks.loader.
deploy = {
  wrap_bin_scripts = false,
}
