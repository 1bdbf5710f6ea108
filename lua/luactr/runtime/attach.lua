-- luactr.runtime.attach: a client of a detached container's monitor:
-- this process's stdio (or terminal) connected to the container's.
local core = require "luactr.core"
local errors = require "luactr.errors"
local state = require "luactr.runtime.state"

local M = {}

-- detach_keys("ctrl-p,ctrl-q") -> the bytes typed (Docker's words:
-- ctrl-<letter>, ctrl-@ [ \ ] ^ _, or a single character)
function M.detach_keys(words)
  local bytes = {}
  for w in (words or "ctrl-p,ctrl-q"):gmatch("[^,]+") do
    local c = w:match("^ctrl%-(.)$")
    if c and c:match("[a-zA-Z@%[\\%]%^_]") then
      bytes[#bytes + 1] = string.char(c:upper():byte() - 64)
    elseif #w == 1 then
      bytes[#bytes + 1] = w
    else
      errors.raise(errors.FAILED, "detach keys: expected ctrl-<letter> or one character, got '%s'", w)
    end
  end
  return table.concat(bytes)
end

-- connect(store, st, o): connects to the monitor of the container of
-- state `st` (see attach).
function M.connect(store, st, o)
  local tty = st.detached.tty
  local how, code = core.attach(require("luactr.runtime.monitor").socket(store, st.id), {
    input = o.input ~= false and st.detached.interactive or false,
    tty = tty, raw = tty and core.pty.isatty(0),
    detach_keys = M.detach_keys(o.detach_keys),
  })
  if not how then errors.raise(errors.FAILED, "attach: %s", code) end
  if how == "closed" then
    -- the monitor went between our connect and its status: ask the state
    local now = state.read(store, st.id)
    return "exit", now and now.exit_code or errors.FAILED
  end
  return how, code
end

-- attach(container, [{ input=, detach_keys= }]) -> "exit", status |
-- "detached": connects this process's stdio to a detached container's
-- (its terminal, with -t) until it ends or the detach keys are typed.
function M.attach(what, o)
  o = o or {}
  local store = require("luactr.storage").open()
  local container = require "luactr.runtime.containers"
  local id = container.find(store, what)
  local st = state.read(store, id)
  if st.status ~= state.RUNNING or not st.detached then
    errors.raise(errors.FAILED, "attach: container %s is not running", what)
  end
  return M.connect(store, st, o)
end

return M
