-- luactr.cli.run: `luactr run`. Its flags are the run options'
-- (luactr.spec.options), and what the user typed goes to luactr.run
-- under their keys.
local errors = require "luactr.errors"
local flags = require "luactr.cli.flags"
local options = require "luactr.spec.options"

local M = {}

local fail = errors.fail

local function usage()
  return table.concat({ [==[
Usage: luactr run [OPTIONS] IMAGE [COMMAND [ARG...]]
       luactr run [OPTIONS] --rootfs DIR [--] COMMAND [ARG...]

Run a command in a new container: a writable snapshot of IMAGE, or the
folder DIR as it is.

Options:
]==], options.usage(), [==[
      --help              print this help

Limits (the container's cgroup; SIZE: bytes, or 512k, 64m, 1g):
]==], options.usage("limits") })
end

-- the run options' flags, and the command line's own
local function spec()
  local t = options.flags()
  t.net = { arg = true, key = "network" }  -- Docker's other name for it
  t.help = {}
  return t
end

function M.run(args)
  local o, rest = flags.parse("run", spec(), args)
  if o.help then
    io.stdout:write(usage())
    return 0
  end
  o.help = nil
  if not o.rootfs then
    o.image = table.remove(rest, 1)
    if not o.image then fail("run: give an image, or a root filesystem with --rootfs DIR") end
  elseif #rest == 0 then
    fail("run: no command given (luactr run --rootfs DIR -- COMMAND)")
  end
  o.cmd = rest
  o.env = flags.environment(o.env, "run")
  -- one word on the command line: "" clears the image's
  if o.entrypoint then o.entrypoint = o.entrypoint == "" and {} or { o.entrypoint } end
  if not o.image then o.rm = nil end  -- a --rootfs run leaves nothing anyway
  local ok, how, code = require("luactr").run(o)
  if o.detach and ok then
    io.stdout:write(ok.id, "\n")
    return 0
  end
  if how == "detached" then return 0 end
  if ok then return 0 end
  return how == "signal" and 128 + code or code
end

return M
