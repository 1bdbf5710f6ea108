-- luactr.spec: the OCI runtime spec of a container, from run options.
--
-- Policy lives here: which namespaces, which mounts, which paths are
-- masked, what the environment holds. The result is a plain table in the
-- shape of the OCI runtime spec's config.json, which core.spawn executes
-- and which crun or runc could run unchanged.
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

-- The process environment: Docker's defaults, then the caller's.
-- `env` is an array of "KEY=VALUE" (a later KEY replaces an earlier one).
function M.environment(o, user, hostname)
  local list, index = {}, {}
  local function set(kv)
    local k = kv:match("^([^=]*)")
    if index[k] then
      list[index[k]] = kv
    else
      list[#list + 1] = kv
      index[k] = #list
    end
  end
  set("PATH=" .. M.DEFAULT_PATH)
  set("HOSTNAME=" .. hostname)
  if o.tty then set("TERM=xterm") end
  set("HOME=" .. user.home)
  for _, kv in ipairs(o.env or {}) do set(kv) end
  return list
end

-- build(o, user) -> spec
-- `o`: validated run options; `user`: from luactr.users.resolve.
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
  if o.console_size then
    spec.process.consoleSize = { height = o.console_size[1], width = o.console_size[2] }
  end
  return spec
end

return M
