-- luactr.spec: the OCI runtime spec of a container, from run options.
--
-- Policy lives here: which namespaces, which mounts, which paths are
-- masked, what the environment holds. The result is a plain table in the
-- shape of the OCI runtime spec's config.json, which core.spawn executes
-- and which crun or runc could run unchanged.
local errors = require "luactr.errors"
local json = require "luactr.json"

local M = {}

M.DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

-- Docker's masked and read-only paths.
M.MASKED_PATHS = {
  "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore",
  "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
  "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
  "/sys/firmware", "/sys/devices/virtual/powercap",
}
M.READONLY_PATHS = {
  "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

-- The mounts every container gets (those of the OCI default config, the
-- ones Docker makes). core.spawn fills a tmpfs /dev with the default
-- device nodes and links.
M.MOUNTS = {
  { destination = "/proc", type = "proc", source = "proc",
    options = { "nosuid", "noexec", "nodev" } },
  { destination = "/dev", type = "tmpfs", source = "tmpfs",
    options = { "nosuid", "strictatime", "mode=755", "size=65536k" } },
  { destination = "/dev/pts", type = "devpts", source = "devpts",
    options = { "nosuid", "noexec", "newinstance", "ptmxmode=0666",
                "mode=0620", "gid=5" } },
  { destination = "/dev/shm", type = "tmpfs", source = "shm",
    options = { "nosuid", "noexec", "nodev", "mode=1777", "size=65536k" } },
  { destination = "/dev/mqueue", type = "mqueue", source = "mqueue",
    options = { "nosuid", "noexec", "nodev" } },
  { destination = "/sys", type = "sysfs", source = "sysfs",
    options = { "nosuid", "noexec", "nodev", "ro" } },
}

-- Docker's default capabilities: a root that can own and change files,
-- switch users, bind low ports and use raw sockets, and little more.
M.CAPABILITIES = {
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
  "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

-- capability_name("sys_admin") -> "CAP_SYS_ADMIN" (or "ALL"); any case,
-- with or without the CAP_ prefix.
function M.capability_name(name)
  local up = name:upper()
  if up == "ALL" then return up end
  if up:sub(1, 4) ~= "CAP_" then up = "CAP_" .. up end
  return up
end

-- The capabilities luactr itself may hand out: its own bounding set.
local function own_capabilities()
  local core = require "luactr.core"
  local sets, err = core.caps.get()
  if not sets then errors.raise(errors.FAILED, "run: %s", err) end
  return sets.bounding
end

-- capability_list(o) -> the container's bounding set, as Docker makes it
-- from `privileged`, `cap_add` and `cap_drop`: the default set less
-- cap_drop plus cap_add; cap_add ALL is every capability but cap_drop's;
-- cap_drop ALL leaves only cap_add. "Every capability" is every one that
-- luactr holds.
function M.capability_list(o)
  if not (o.privileged or o.cap_add or o.cap_drop) then return M.CAPABILITIES end
  local own = own_capabilities()
  if o.privileged then return own end
  local known, held = {}, {}
  for _, c in ipairs(require("luactr.core").caps.names()) do known[c] = true end
  for _, c in ipairs(own) do held[c] = true end
  local function names(list, what)
    local set, all = {}, false
    for _, n in ipairs(list or {}) do
      local c = M.capability_name(n)
      if c == "ALL" then
        all = true
      elseif not known[c] then
        errors.raise(errors.FAILED, "run: %s: unknown capability: %s", what, n)
      else
        set[#set + 1], set[c] = c, true
      end
    end
    return set, all
  end
  local add, add_all = names(o.cap_add, "cap-add")
  local drop, drop_all = names(o.cap_drop, "cap-drop")
  local list, seen = {}, {}
  local function put(c)
    if not seen[c] then list[#list + 1], seen[c] = c, true end
  end
  if add_all then
    for _, c in ipairs(own) do
      if not drop[c] then put(c) end
    end
  else
    if not drop_all then
      for _, c in ipairs(M.CAPABILITIES) do
        if not drop[c] then put(c) end
      end
    end
    for _, c in ipairs(add) do
      if not held[c] then
        errors.raise(errors.FAILED, "run: cap-add: luactr itself does not hold %s", c)
      end
      put(c)
    end
  end
  return list
end

-- capabilities(list, uid) -> OCI process.capabilities
-- Root gets the whole list in every set; any other user gets none in
-- effect (as Docker does: execve would clear them anyway) and keeps the
-- bounding set. The inheritable set stays empty, as in Docker since
-- CVE-2022-24769: with it a non-root user could regain capabilities
-- through a file's inheritable ones.
function M.capabilities(list, uid)
  local function copy(t) return json.array(table.move(t, 1, #t, 1, {})) end
  local none = {}
  local caps = { bounding = copy(list), inheritable = copy(none), ambient = copy(none) }
  local given = uid == 0 and list or none
  caps.effective, caps.permitted = copy(given), copy(given)
  return caps
end

-- env_setter(list) -> set(kv): sets "KEY=VALUE" strings into the array
-- `list`, a KEY already there replaced in place.
function M.env_setter(list)
  local index = {}
  for i, kv in ipairs(list) do index[kv:match("^[^=]*")] = i end
  return function(kv)
    local k = kv:match("^[^=]*")
    if index[k] then
      list[index[k]] = kv
    else
      list[#list + 1] = kv
      index[k] = #list
    end
  end
end

-- The process environment: Docker's defaults, then the caller's.
-- `env` is an array of "KEY=VALUE" (a later KEY replaces an earlier one).
function M.environment(o, user, hostname)
  local list = {}
  local set = M.env_setter(list)
  set("PATH=" .. M.DEFAULT_PATH)
  set("HOSTNAME=" .. hostname)
  if o.tty then set("TERM=xterm") end
  set("HOME=" .. user.home)
  for _, kv in ipairs(o.env or {}) do set(kv) end
  return list
end

-- A copy of the default mounts with /sys writable, for --privileged.
local function privileged_mounts()
  local mounts = {}
  for i, m in ipairs(M.MOUNTS) do
    if m.destination == "/sys" then
      local options = {}
      for _, opt in ipairs(m.options) do
        if opt ~= "ro" then options[#options + 1] = opt end
      end
      m = { destination = m.destination, type = m.type, source = m.source,
            options = options }
    end
    mounts[i] = m
  end
  return mounts
end

-- A user namespace for --userns=remap: o.uid_mappings and o.gid_mappings
-- (from luactr.runtime.userns) map container root onto luactr's subordinate ids.
-- Without a network namespace of its own (--network host, owned by the
-- host's user namespace) the kernel refuses a new sysfs: the host's /sys
-- is bound read-only instead, as runc and crun do.
local function remap(spec, o)
  table.insert(spec.linux.namespaces, 1, { type = "user" })
  spec.linux.uidMappings, spec.linux.gidMappings = o.uid_mappings, o.gid_mappings
  if o.network ~= "host" then return end
  local mounts = {}
  for i, m in ipairs(spec.mounts) do
    if m.destination == "/sys" then
      m = { destination = "/sys", type = "bind", source = "/sys",
            options = { "rbind", "nosuid", "noexec", "nodev", "ro" } }
    end
    mounts[i] = m
  end
  spec.mounts = mounts
end

-- The cgroup of container `id`, as linux.cgroupsPath names it: its
-- folder luactr-<id12>, beneath `parent` (relative: beneath luactr's own
-- cgroup; luactr.runtime.cgroup makes it).
function M.cgroups_path(id, parent)
  return (parent and parent:gsub("/*$", "/") or "") .. "luactr-" .. id:sub(1, 12)
end

-- build(o, user) -> spec, the whole of it: nothing patches it afterwards.
-- `o`: prepared run options (luactr.runtime.run); `user`: from
-- luactr.spec.users.resolve. Confinement: Docker's capabilities
-- (o.privileged, o.cap_add, o.cap_drop), no_new_privs unless
-- o.no_new_privileges is false, and a seccomp profile, o.seccomp (a
-- profile table or "unconfined"; Docker's default when nil).
-- o.privileged also lifts seccomp and the masks. With o.id, its cgroup:
-- o.resources (luactr.spec.resources) in linux.cgroupsPath. A build step
-- (o.host_resolv) reads the host's resolv.conf, as docker build does.
function M.build(o, user)
  local namespaces = {
    { type = "pid" }, { type = "mount" }, { type = "uts" }, { type = "ipc" },
    { type = "cgroup" },
  }
  if o.network ~= "host" then namespaces[#namespaces + 1] = { type = "network" } end
  local spec = {
    ociVersion = "1.0.2",
    process = {
      terminal = o.tty or false,
      user = { uid = user.uid, gid = user.gid,
               additionalGids = user.additionalGids },
      args = o.cmd,
      env = M.environment(o, user, o.hostname),
      cwd = o.workdir or "/",
      noNewPrivileges = o.no_new_privileges ~= false,
    },
    root = { path = o.rootfs, readonly = o.read_only or false },
    hostname = o.hostname,
    mounts = M.MOUNTS,
    linux = {
      namespaces = namespaces,
      maskedPaths = M.MASKED_PATHS,
      readonlyPaths = M.READONLY_PATHS,
    },
  }
  spec.linux.devices = o.device_nodes  -- beside the default nodes (luactr.spec.devices)
  if o.uid_mappings then remap(spec, o) end
  if o.device_binds then
    local mounts = {}
    for i, m in ipairs(spec.mounts) do mounts[i] = m end
    for _, m in ipairs(o.device_binds) do mounts[#mounts + 1] = m end
    spec.mounts = mounts
  end
  local caps = M.capability_list(o)
  spec.process.capabilities = M.capabilities(caps, user.uid)
  if o.privileged then
    spec.mounts = privileged_mounts()
    spec.linux.maskedPaths, spec.linux.readonlyPaths = nil, nil
  elseif o.seccomp ~= "unconfined" then
    local seccomp = require "luactr.spec.seccomp"
    spec.linux.seccomp = seccomp.resolve(o.seccomp or seccomp.DEFAULT, caps)
  end
  if o.console_size then
    spec.process.consoleSize = { height = o.console_size[1], width = o.console_size[2] }
  end
  if o.host_resolv then
    local mounts = {}
    for i, m in ipairs(spec.mounts) do mounts[i] = m end
    mounts[#mounts + 1] = { destination = "/etc/resolv.conf", type = "bind",
      source = "/etc/resolv.conf", options = { "bind", "ro" } }
    spec.mounts = mounts
  end
  if o.id then
    spec.linux.resources = o.resources
    spec.linux.cgroupsPath = M.cgroups_path(o.id, o.cgroup_parent)
  end
  return spec
end

-- exec(saved, o) -> the spec of a command exec'd into a running
-- container: its own, `saved` (its config.json, as build made it), with
-- o.cmd, o.tty (and o.console_size: rows, cols), o.env (KEY=VALUE
-- strings, over its environment), o.user (from luactr.spec.users: its
-- ids and HOME), o.privileged (every capability luactr holds, as docker
-- exec --privileged gives; its seccomp profile and no_new_privs stay, as
-- Docker's do), o.workdir. A namespace of its own becomes one to join:
-- that is core.spawn's join mode, given the container's PID 1.
function M.exec(saved, o)
  local s = saved
  local p = s.process
  p.args = o.cmd
  p.terminal = o.tty or false
  p.consoleSize = o.console_size and { height = o.console_size[1], width = o.console_size[2] } or nil
  local env = json.array(p.env or {})
  local set = M.env_setter(env)
  if o.tty then set("TERM=xterm") end  -- as docker exec -t
  local uid = p.user and p.user.uid or 0
  if o.user or o.privileged then
    if o.user then
      uid = o.user.uid
      p.user = { uid = o.user.uid, gid = o.user.gid, umask = p.user and p.user.umask,
                 additionalGids = json.array(o.user.additionalGids) }
      set("HOME=" .. o.user.home)
    end
    local caps = p.capabilities and p.capabilities.bounding or {}
    if o.privileged then caps = M.capability_list({ privileged = true }) end
    p.capabilities = M.capabilities(caps, uid)
  end
  for _, kv in ipairs(o.env or {}) do set(kv) end
  p.env = env
  if o.workdir then p.cwd = o.workdir end
  return s
end

return M
