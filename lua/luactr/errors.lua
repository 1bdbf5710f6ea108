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

-- Is `e` an error raised by luactr (and not a bug)?
function M.is(e)
  return getmetatable(e) == Error
end

return M
