-- luactr.runtime.handle: a handle on a container, the verbs of the
-- luactr API as its methods (what luactr.container(what) and a detached
-- luactr.run return).
local M = {}

local Container = {}
Container.__index = Container

local function api() return require "luactr" end

-- container(what) -> a handle on a container (name, id or id prefix)
-- with the verbs as methods: inspect, attach, start, rm, logs, stats,
-- exec, and those of luactr.runtime.control.
function M.container(what)
  local store = require("luactr.storage").open()
  local id = require("luactr.runtime.containers").find(store, what)
  return M.of(id)
end

-- of(id) -> the handle of the container `id`.
function M.of(id)
  return setmetatable({ id = id }, Container)
end

function Container:attach(o) return api().attach(self.id, o) end
function Container:inspect() return api().inspect(self.id) end
function Container:wait() return api().wait(self.id) end
function Container:stop(o) return api().stop(self.id, o) end
function Container:kill(sig) return api().kill(self.id, sig) end
function Container:pause() return api().pause(self.id) end
function Container:unpause() return api().unpause(self.id) end
function Container:top(args) return api().top(self.id, args) end
function Container:start() return api().start(self.id) end
function Container:rm(o) return api().rm(self.id, o) end
function Container:logs(o) return api().logs(self.id, o) end
function Container:stats(prev) return api().stats(self.id, prev) end
function Container:exec(o)
  local t = {}
  for k, v in pairs(o) do t[k] = v end
  t.container = self.id
  return api().exec(t)
end

return M
