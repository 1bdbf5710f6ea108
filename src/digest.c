/*
** digest.c -- sha256, with nettle: of a string, of a file streamed from
** disk, and incrementally through a hasher handle. Digests are 64
** lowercase hex characters, as OCI digests write them after "sha256:".
**
** Nettle rather than OpenSSL: libcrypto's first digest in a process
** costs 1.5-2 ms of provider start-up, which `luactr run` would pay on
** every start; nettle has no start-up at all (and libarchive already
** depends on it).
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "luactr.h"

#define LX_DIGEST "luactr.digest"

typedef struct hasher {
  struct sha256_ctx ctx;
  bool open;         /* false once finalised or closed */
  char hex[SHA256_DIGEST_SIZE * 2 + 1];  /* the result, once finalised */
} hasher;

static void to_hex(const unsigned char *md, unsigned n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (unsigned i = 0; i < n; i++) {
    out[2 * i] = digits[md[i] >> 4];
    out[2 * i + 1] = digits[md[i] & 15];
  }
  out[2 * n] = '\0';
}

/* Finalises `h` into h->hex. */
static void finish(hasher *h) {
  unsigned char md[SHA256_DIGEST_SIZE];
  sha256_digest(&h->ctx, SHA256_DIGEST_SIZE, md);
  h->open = false;
  to_hex(md, SHA256_DIGEST_SIZE, h->hex);
}

/* A hasher userdata on the stack, collected (and its context freed)
** even if a later step raises. */
static hasher *newhasher(lua_State *L) {
  hasher *h = lua_newuserdatauv(L, sizeof *h, 0);
  sha256_init(&h->ctx);
  h->open = true;
  h->hex[0] = '\0';
  luaL_setmetatable(L, LX_DIGEST);
  return h;
}

/* digest.sha256(data) -> hex */
static int l_sha256(lua_State *L) {
  size_t n;
  const char *data = luaL_checklstring(L, 1, &n);
  struct sha256_ctx ctx;
  unsigned char md[SHA256_DIGEST_SIZE];
  sha256_init(&ctx);
  sha256_update(&ctx, n, (const uint8_t *)data);
  sha256_digest(&ctx, SHA256_DIGEST_SIZE, md);
  char hex[SHA256_DIGEST_SIZE * 2 + 1];
  to_hex(md, SHA256_DIGEST_SIZE, hex);
  lua_pushstring(L, hex);
  return 1;
}

/* digest.new() -> hasher: h:update(data) ... h:hex() */
static int l_new(lua_State *L) {
  newhasher(L);
  return 1;
}

/* h:update(data) -> h. Raises once h:hex() has finalised the hasher
** (or it was closed): what the digest covers must not change after. */
static int l_update(lua_State *L) {
  hasher *h = luaL_checkudata(L, 1, LX_DIGEST);
  size_t n;
  const char *data = luaL_checklstring(L, 2, &n);
  if (!h->open)
    return luaL_error(L, "digest: update after hex() or close");
  sha256_update(&h->ctx, n, (const uint8_t *)data);
  lua_settop(L, 1);
  return 1;
}

/* h:hex() -> the hex digest of all that was given. The first call
** finalises the hasher; later calls return the same digest again.
** Raises on a hasher closed (<close>) before it was finalised. */
static int l_hex(lua_State *L) {
  hasher *h = luaL_checkudata(L, 1, LX_DIGEST);
  if (h->open)
    finish(h);
  else if (!h->hex[0])
    return luaL_error(L, "digest: hex() of a closed hasher");
  lua_pushstring(L, h->hex);
  return 1;
}

static int l_gc(lua_State *L) {
  hasher *h = luaL_checkudata(L, 1, LX_DIGEST);
  h->open = false;  /* nothing to free: the context lives in the userdata */
  return 0;
}

/* digest.file(path) -> hex | nil, err, errno: the file's sha256, read in
** blocks (never all in memory). */
static int l_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  hasher *h = newhasher(L);  /* collected if anything below raises */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return lx_fail(L, lua_pushfstring(L, "digest %s", path), errno);
  char buf[32768];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return lx_fail(L, lua_pushfstring(L, "digest %s", path), err);
    }
    if (n == 0)
      break;
    sha256_update(&h->ctx, (size_t)n, (const uint8_t *)buf);
  }
  close(fd);
  finish(h);
  lua_pushstring(L, h->hex);
  return 1;
}

static const luaL_Reg digest_meta[] = {
  {"__gc", l_gc},
  {"__close", l_gc},
  {"__index", NULL},
  {NULL, NULL},
};

static const luaL_Reg digest_methods[] = {
  {"update", l_update},
  {"hex", l_hex},
  {NULL, NULL},
};

static const luaL_Reg digest_funcs[] = {
  {"sha256", l_sha256},
  {"new", l_new},
  {"file", l_file},
  {NULL, NULL},
};

void lx_open_digest(lua_State *L) {
  luaL_newmetatable(L, LX_DIGEST);
  luaL_setfuncs(L, digest_meta, 0);
  luaL_newlib(L, digest_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, digest_funcs);
}
