-- busted output: the usual terminal report, then one closing line
-- "N passed, N failed, N skipped" that CI reads. Errors count as failed;
-- pending tests are skipped, never passed.
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.utfTerminal")(options)
  busted.subscribe({ "suite", "end" }, function()
    io.write(("\n%d passed, %d failed, %d skipped\n"):format(#handler.successes,
      #handler.failures + #handler.errors, #handler.pendings))
    io.flush()
    return nil, true
  end)
  return handler
end
