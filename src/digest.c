/*
** digest.c -- sha256, with OpenSSL's libcrypto (EVP): of a string, of a
** file streamed from disk, and incrementally through a hasher handle.
** Digests are 64 lowercase hex characters, as OCI digests write them
** after "sha256:".
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "luactr.h"

#define LX_DIGEST "luactr.digest"

typedef struct hasher {
  EVP_MD_CTX *ctx;   /* NULL once finalised or collected */
  char hex[EVP_MAX_MD_SIZE * 2 + 1];  /* the result, once finalised */
} hasher;

static void to_hex(const unsigned char *md, unsigned n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (unsigned i = 0; i < n; i++) {
    out[2 * i] = digits[md[i] >> 4];
    out[2 * i + 1] = digits[md[i] & 15];
  }
  out[2 * n] = '\0';
}

/* Makes a sha256 context in `h`; raises when libcrypto cannot (memory). */
static void start(lua_State *L, hasher *h) {
  h->ctx = EVP_MD_CTX_new();
  if (!h->ctx || !EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL))
    luaL_error(L, "digest: cannot start sha256");
}

/* Finalises `h` into h->hex and frees its context; raises on failure. */
static void finish(lua_State *L, hasher *h) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  int r = EVP_DigestFinal_ex(h->ctx, md, &n);
  EVP_MD_CTX_free(h->ctx);
  h->ctx = NULL;
  if (!r)
    luaL_error(L, "digest: cannot finish sha256");
  to_hex(md, n, h->hex);
}

/* A hasher userdata on the stack, collected (and its context freed)
** even if a later step raises. */
static hasher *newhasher(lua_State *L) {
  hasher *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->ctx = NULL;
  h->hex[0] = '\0';
  luaL_setmetatable(L, LX_DIGEST);
  start(L, h);
  return h;
}

/* digest.sha256(data) -> hex */
static int l_sha256(lua_State *L) {
  size_t n;
  const char *data = luaL_checklstring(L, 1, &n);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (!EVP_Digest(data, n, md, &len, EVP_sha256(), NULL))
    return luaL_error(L, "digest: sha256 failed");
  char hex[EVP_MAX_MD_SIZE * 2 + 1];
  to_hex(md, len, hex);
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
  if (!h->ctx)
    return luaL_error(L, "digest: update after hex() or close");
  if (!EVP_DigestUpdate(h->ctx, data, n))
    return luaL_error(L, "digest: update failed");
  lua_settop(L, 1);
  return 1;
}

/* h:hex() -> the hex digest of all that was given. The first call
** finalises the hasher; later calls return the same digest again.
** Raises on a hasher closed (<close>) before it was finalised. */
static int l_hex(lua_State *L) {
  hasher *h = luaL_checkudata(L, 1, LX_DIGEST);
  if (h->ctx)
    finish(L, h);
  else if (!h->hex[0])
    return luaL_error(L, "digest: hex() of a closed hasher");
  lua_pushstring(L, h->hex);
  return 1;
}

static int l_gc(lua_State *L) {
  hasher *h = luaL_checkudata(L, 1, LX_DIGEST);
  if (h->ctx) {
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
  }
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
    if (!EVP_DigestUpdate(h->ctx, buf, (size_t)n)) {
      close(fd);
      return luaL_error(L, "digest: update failed");
    }
  }
  close(fd);
  finish(L, h);
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
