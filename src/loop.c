/*
** loop.c -- loop devices, for the btrfs store image on hosts whose root
** is not btrfs: attach a file, detach, find what a device is backed by.
**
** Autoclear and holding: with LO_FLAGS_AUTOCLEAR the kernel frees a loop
** device at its last close. The fd that configured it is such a close:
** closed right away, it would free the device before anyone could mount
** it. So attach keeps that fd open, held in the Lua state (registry), until
** loop.release(dev) or loop.detach(dev), or until the state is closed or
** the process ends. The device then lives as long as this hold or a mount
** of it does, and goes by itself when the last of them goes.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "luactr.h"

#define LX_LOOPHOLD "luactr.loophold"
#define HELD "luactr.loop.held"  /* registry: "/dev/loopN" -> hold */

/* An open fd of a loop device, closed when released or collected. */
typedef struct hold {
  int fd;
} hold;

static int hold_close(lua_State *L) {
  hold *h = luaL_checkudata(L, 1, LX_LOOPHOLD);
  if (h->fd >= 0) {
    close(h->fd);
    h->fd = -1;
  }
  return 0;
}

/* Pushes the registry's table of held devices. */
static void held(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, HELD);
}

/* Drops the hold on `dev`, if this state has one. Returns whether it had. */
static bool release(lua_State *L, const char *dev) {
  held(L);
  bool had = lua_getfield(L, -1, dev) == LUA_TUSERDATA;
  if (had) {
    hold *h = luaL_checkudata(L, -1, LX_LOOPHOLD);
    if (h->fd >= 0) {
      close(h->fd);
      h->fd = -1;
    }
    lua_pushnil(L);
    lua_setfield(L, -3, dev);
  }
  lua_pop(L, 2);
  return had;
}

/* The number N of "/dev/loopN" or "loopN"; raises on anything else. */
static int dev_number(lua_State *L, int arg) {
  const char *dev = luaL_checkstring(L, arg);
  const char *p = strncmp(dev, "/dev/", 5) == 0 ? dev + 5 : dev;
  char *end;
  if (strncmp(p, "loop", 4) != 0 || p[4] < '0' || p[4] > '9')
    luaL_argerror(L, arg, "not a loop device name");
  long n = strtol(p + 4, &end, 10);
  if (*end || n < 0 || n > 1 << 20)
    luaL_argerror(L, arg, "not a loop device name");
  return (int)n;
}

/* loop.attach(file, [{readonly=false, autoclear=true}]) -> "/dev/loopN"
** | nil, err, errno. Binds `file` to a free loop device in one
** LOOP_CONFIGURE (kernel >= 5.8), retrying when another process takes
** the same free device first. With autoclear the device is held (see
** above) until loop.release(dev): mount it, then release it, and it is
** freed when unmounted. */
static int l_attach(lua_State *L) {
  const char *file = luaL_checkstring(L, 1);
  bool readonly = false, autoclear = true;
  if (!lua_isnoneornil(L, 2)) {
    static const char *const known[] = {"readonly", "autoclear", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    lx_checkkeys(L, 2, "loop.attach", known);
    if (lua_getfield(L, 2, "readonly") != LUA_TNIL)
      readonly = lua_toboolean(L, -1);
    if (lua_getfield(L, 2, "autoclear") != LUA_TNIL)
      autoclear = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  /* the hold first, so that no Lua error can leak the fd afterwards */
  hold *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->fd = -1;
  luaL_setmetatable(L, LX_LOOPHOLD);
  int ffd = open(file, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (ffd < 0)
    return lx_fail(L, lua_pushfstring(L, "loop attach %s", file), errno);
  int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) {
    int err = errno;
    close(ffd);
    return lx_fail(L, "loop attach: /dev/loop-control", err);
  }
  struct loop_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.fd = (unsigned)ffd;
  cfg.info.lo_flags = (readonly ? LO_FLAGS_READ_ONLY : 0) |
                      (autoclear ? LO_FLAGS_AUTOCLEAR : 0);
  snprintf((char *)cfg.info.lo_file_name, sizeof cfg.info.lo_file_name, "%s",
           file);
  char dev[32];
  int lfd = -1, err = 0;
  for (int tries = 0; tries < 64; tries++) {
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) {
      err = errno;
      break;
    }
    snprintf(dev, sizeof dev, "/dev/loop%d", n);
    lfd = open(dev, O_RDWR | O_CLOEXEC);
    if (lfd < 0) {
      err = errno;
      if (err == ENOENT)
        continue;  /* its node is not there yet: try again */
      break;
    }
    if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
      err = 0;
      break;
    }
    err = errno;
    close(lfd);
    lfd = -1;
    if (err != EBUSY)
      break;  /* EBUSY: someone bound it between GET_FREE and here */
  }
  close(ctl);
  close(ffd);  /* the device keeps its own reference to the file */
  if (lfd < 0)
    return lx_fail(L, lua_pushfstring(L, "loop attach %s", file),
                   err ? err : EBUSY);
  if (autoclear) {
    h->fd = lfd;
    held(L);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, dev);
    lua_pop(L, 1);
  } else {
    close(lfd);
  }
  lua_pushstring(L, dev);
  return 1;
}

/* loop.release(dev) -> bool: drops this state's hold on `dev` (made by
** attach with autoclear); an autoclear device that nothing mounts is
** freed at once. false when there was no hold. */
static int l_release(lua_State *L) {
  dev_number(L, 1);
  lua_pushboolean(L, release(L, lua_tostring(L, 1)));
  return 1;
}

/* loop.detach(dev) -> true | nil, err, errno (LOOP_CLR_FD). A device
** still mounted is not refused by the kernel: it becomes autoclear and
** is freed when unmounted. */
static int l_detach(lua_State *L) {
  int n = dev_number(L, 1);
  char dev[32];
  snprintf(dev, sizeof dev, "/dev/loop%d", n);
  int fd = open(dev, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return lx_fail(L, lua_pushfstring(L, "loop detach %s", dev), errno);
  /* the hold, if any, goes after our own open: the device must not be
  ** freed (and perhaps reused by another process) before LOOP_CLR_FD */
  release(L, dev);
  int r = ioctl(fd, LOOP_CLR_FD, 0);
  int err = errno;
  close(fd);
  if (r < 0)
    return lx_fail(L, lua_pushfstring(L, "loop detach %s", dev), err);
  lua_pushboolean(L, 1);
  return 1;
}

/* loop.backing_file(dev) -> path | nil when the device is not bound |
** nil, err, errno on other failures. Read from sysfs; the path ends in
** " (deleted)" when the file was removed. */
static int l_backing_file(lua_State *L) {
  int n = dev_number(L, 1);
  char path[96];
  snprintf(path, sizeof path, "/sys/block/loop%d/loop/backing_file", n);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT)
      return lx_fail(L, path, errno);
    lua_pushnil(L);  /* no such device, or nothing bound to it */
    return 1;
  }
  char buf[4096 + 16];
  ssize_t r;
  do
    r = read(fd, buf, sizeof buf - 1);
  while (r < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (r < 0)
    return lx_fail(L, path, err);
  while (r > 0 && buf[r - 1] == '\n')
    r--;
  lua_pushlstring(L, buf, (size_t)r);
  return 1;
}

static const luaL_Reg hold_meta[] = {
  {"__gc", hold_close},
  {"__close", hold_close},
  {NULL, NULL},
};

static const luaL_Reg loop_funcs[] = {
  {"attach", l_attach},
  {"release", l_release},
  {"detach", l_detach},
  {"backing_file", l_backing_file},
  {NULL, NULL},
};

void lx_open_loop(lua_State *L) {
  luaL_newmetatable(L, LX_LOOPHOLD);
  luaL_setfuncs(L, hold_meta, 0);
  lua_pop(L, 1);
  luaL_newlib(L, loop_funcs);
}
