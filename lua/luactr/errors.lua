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

-- Raises an error with `status` and a formatted message.
function M.raise(status, fmt, ...)
  error(setmetatable({ status = status, message = fmt:format(...) }, Error), 0)
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

-- Is `e` an error raised by luactr (and not a bug)?
function M.is(e)
  return getmetatable(e) == Error
end

return M
