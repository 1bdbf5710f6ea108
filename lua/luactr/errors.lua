-- luactr.errors: the errors luactr raises.
--
-- An error is a table with the message and the exit status the CLI should
-- use (Docker's convention: 125 luactr failed, 126 the command cannot be
-- executed, 127 it was not found). tostring() gives the message, so a Lua
-- program that prints the error reads what a user of the CLI would.
local M = {}

local Error = {}
Error.__index = Error
Error.__tostring = function(e) return e.message end

M.FAILED, M.CANNOT_EXEC, M.NOT_FOUND = 125, 126, 127

-- new(status, fmt, ...) -> an error with `status` and a formatted
-- message, not raised yet.
function M.new(status, fmt, ...)
  return setmetatable({ status = status, message = fmt:format(...) }, Error)
end

-- Raises an error with `status` and a formatted message.
function M.raise(status, fmt, ...)
  error(M.new(status, fmt, ...), 0)
end

-- fail(fmt, ...): raises a failure of luactr itself (status 125).
function M.fail(fmt, ...)
  M.raise(M.FAILED, fmt, ...)
end

-- must(what, ok, err, ...) -> ok, err, ...: passes a core call's results
-- through, or raises "what: err" when it failed (nil, err, errno).
function M.must(what, ok, err, ...)
  if ok == nil then M.raise(M.FAILED, "%s: %s", what, err) end
  return ok, err, ...
end

local ESCAPES = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\" }

-- quote(s, [mark]) -> s as a message may show it, when s comes from a
-- user (a name, a reference): as it is when it is printable ASCII with
-- no space (between two `mark`s, when given, and then with spaces inside
-- it too); else in double quotes with escapes (\n, \t, \", \\, \x1b),
-- so that no newline or escape code reaches a terminal raw, and an empty
-- or a blank one shows.
function M.quote(s, mark)
  s = tostring(s)
  local plain = mark and "^[!-~][ -~]*$" or "^[!-~]+$"
  if s:find(plain) and not s:find("[\"\\]") and not s:find(" $") then
    return mark and mark .. s .. mark or s
  end
  return '"' .. s:gsub(".", function(c)
    local b = c:byte()
    if ESCAPES[c] then return ESCAPES[c] end
    if b < 32 or b > 126 then return ("\\x%02x"):format(b) end
  end) .. '"'
end

-- Is `e` an error raised by luactr (and not a bug)?
function M.is(e)
  return getmetatable(e) == Error
end

-- rethrow(e, [prefix]): raises `e` again, a luactr error with "prefix: "
-- in front of its message (its status kept); anything else (a bug) as
-- it is.
function M.rethrow(e, prefix)
  if prefix and M.is(e) then M.raise(e.status, "%s: %s", prefix, e.message) end
  error(e, 0)
end

-- within(prefix, fn, ...) -> what fn(...) returns; what it raises comes
-- out through rethrow(e, prefix).
function M.within(prefix, fn, ...)
  local r = table.pack(pcall(fn, ...))
  if not r[1] then M.rethrow(r[2], prefix) end
  return table.unpack(r, 2, r.n)
end

-- spawn(step, errno) -> the exit status of a container that core.spawn
-- could not start: 127 when its command is not found, 126 when it cannot
-- be executed, 125 when another step failed.
function M.spawn(step, errno)
  if step ~= "exec" then return M.FAILED end
  local e = require("luactr.core").sys.errno
  return (errno == e.ENOENT or errno == e.ENOTDIR) and M.NOT_FOUND or M.CANNOT_EXEC
end

return M
