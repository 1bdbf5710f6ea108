-- luactr.paths: where luactr keeps its things on this host. Small on
-- purpose: every start asks it (cgroup records, the seccomp cache).
local M = {}

-- root() -> the store's root as given: LUACTR_ROOT, else /var/lib/luactr.
function M.root()
  local root = os.getenv("LUACTR_ROOT")
  return (root and root ~= "") and root or "/var/lib/luactr"
end

-- run_base([root]) -> luactr's folder of run-time files (monitor sockets,
-- cgroup records, compiled seccomp filters): LUACTR_RUNROOT, else
-- ROOT/run when LUACTR_ROOT is set (`root`: the store's, real path), else
-- /run/luactr. Gone at a reboot, as cgroups are.
function M.run_base(root)
  local base = os.getenv("LUACTR_RUNROOT")
  if base and base ~= "" then return base end
  local env = os.getenv("LUACTR_ROOT")
  if not env or env == "" then return "/run/luactr" end
  return (root or require("luactr.core").fs.realpath(env) or env) .. "/run"
end

return M
