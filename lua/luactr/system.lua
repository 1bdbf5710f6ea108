-- luactr.system: the store as a whole: what `luactr info` shows.
local core = require "luactr.core"

local M = {}

-- info() -> { driver=, root=, store=, filesystem=, used=, free= (bytes),
-- images=, containers= (counts) }
function M.info()
  local s = require("luactr.storage").open()
  local st = core.fs.statfs(s.dir)
  return {
    driver = s.driver, root = s.root, store = s.dir, filesystem = st.type,
    used = (st.blocks - st.bfree) * st.bsize, free = st.bavail * st.bsize,
    images = #s:images(), containers = #s:containers(),
  }
end

return M
