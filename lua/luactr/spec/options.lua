-- luactr.spec.options: the options of a container run, listed once.
--
-- Each option has its key in luactr.run's table (which a recipe's
-- container entry uses too), the check of its value, and how the command
-- line sets it: its flag (and short flag), the name of its value in the
-- help (`arg`; none for a switch), whether it may be given again
-- (`list`), whether the flag's text is made an integer, and its help.
-- luactr.runtime.run checks a table with `check`; the command line
-- parses with flags() and prints usage(); recipes take `checks`.
local check = require "luactr.check"

local M = {}

local strings = check.array(check.string)
local size = check.either(check.string, check.integer)

-- { key, check, flag=, short=, arg=, list=, integer=, group=, help = { lines } }
M.LIST = {
  { "rootfs", check.string, flag = "rootfs", arg = "DIR",
    help = { "the container's root filesystem (a folder)" } },
  { "env", check.either(strings, check.map(check.string)), flag = "env", short = "e",
    arg = "KEY=VALUE", list = true,
    help = { "set an environment variable (KEY alone: take", "it from luactr's own environment)" } },
  { "workdir", check.string, flag = "workdir", short = "w", arg = "DIR",
    help = { "working directory inside the container" } },
  { "user", check.either(check.string, check.integer), flag = "user", short = "u",
    arg = "USER[:GROUP]", help = { "user name or uid (and group name or gid)" } },
  { "hostname", check.string, flag = "hostname", short = "h", arg = "NAME",
    help = { "the container's host name" } },
  { "read_only", check.boolean, flag = "read-only",
    help = { "mount the root filesystem read-only" } },
  { "network", check.enum("none", "host"), flag = "network", arg = "MODE",
    help = { '"none" (default: its own, with lo) or "host"' } },
  { "init", check.boolean, flag = "init",
    help = { "run a tiny init as PID 1 that reaps zombies", "and forwards signals" } },
  { "interactive", check.boolean, flag = "interactive", short = "i",
    help = { "keep stdin open" } },
  { "tty", check.boolean, flag = "tty", short = "t", help = { "allocate a pseudo-terminal" } },
  { "cap_add", strings, flag = "cap-add", arg = "CAP", list = true,
    help = { "add a capability to Docker's default set", "(CHOWN or CAP_CHOWN, any case; ALL for all)" } },
  { "cap_drop", strings, flag = "cap-drop", arg = "CAP", list = true,
    help = { "drop a capability (ALL: start from none)" } },
  { "privileged", check.boolean, flag = "privileged",
    help = { "all capabilities, no seccomp filter, no masked", "or read-only paths, /sys writable, every device" } },
  { "devices", strings, flag = "device", arg = "HOST[:CONTAINER][:rwm]", list = true,
    help = { "give the container a host device", "(repeatable; it may read, write, mknod it)" } },
  { "security_opt", strings, flag = "security-opt", arg = "OPT", list = true,
    help = { "seccomp=unconfined, seccomp=FILE (a profile in", "Docker's JSON format), no-new-privileges=false" } },
  { "seccomp", check.either(check.string, check.table),
    help = { "a profile table in Docker's format, a file holding one, or \"unconfined\"" } },
  { "no_new_privileges", check.boolean, help = { "false: the process may gain privileges (true by default)" } },
  { "userns", check.enum("remap", "host"), flag = "userns", arg = "MODE",
    help = { '"remap": container root is an unprivileged host', "uid (luactr's range in /etc/subuid, subgid);",
             '"host" (default): no user namespace' } },
  { "name", check.string, flag = "name", arg = "NAME", help = { "a name for the container (unique)" } },
  { "entrypoint", strings, flag = "entrypoint", arg = "CMD", help = { "replace the image's entrypoint" } },
  { "rm", check.boolean, flag = "rm",
    help = { "remove the container when it exits (a --rootfs", "container leaves nothing behind anyway)" } },
  { "detach", check.boolean, flag = "detach", short = "d",
    help = { "run it in the background, print its id; a", "small monitor keeps its log and its stdio" } },
  { "restart", check.string, flag = "restart", arg = "POLICY",
    help = { "no, always, unless-stopped, on-failure[:N]", "(detached; the monitor restarts it, backing off)" } },
  { "log_opt", strings, flag = "log-opt", arg = "OPT", list = true,
    help = { "max-size=SIZE, max-file=N: rotate its log" } },
  { "detach_keys", check.string, flag = "detach-keys", arg = "KEYS",
    help = { "the keys that detach a terminal (-it) from it", "(default ctrl-p,ctrl-q)" } },
  -- limits: the container's cgroup (luactr.runtime.cgroup)
  { "memory", size, flag = "memory", short = "m", arg = "SIZE", group = "limits",
    help = { "memory limit" } },
  { "memory_swap", size, flag = "memory-swap", arg = "SIZE", group = "limits",
    help = { "memory and swap together (-1: unlimited swap;", "default: as much swap as memory)" } },
  { "memory_reservation", size, flag = "memory-reservation", arg = "SIZE", group = "limits",
    help = { "soft memory limit" } },
  { "cpus", check.either(check.number, check.string), flag = "cpus", arg = "N", group = "limits",
    help = { "CPUs' worth of time (0.5: half of one)" } },
  { "cpu_shares", check.integer, flag = "cpu-shares", short = "c", arg = "N", integer = true,
    group = "limits", help = { "relative CPU weight (1024 by default)" } },
  { "cpuset_cpus", check.string, flag = "cpuset-cpus", arg = "LIST", group = "limits",
    help = { "the CPUs it may run on (0-2,4)" } },
  { "cpuset_mems", check.string, flag = "cpuset-mems", arg = "LIST", group = "limits",
    help = { "the memory nodes it may use" } },
  { "pids_limit", check.integer, flag = "pids-limit", arg = "N", integer = true, group = "limits",
    help = { "at most N processes (-1: unlimited)" } },
  { "blkio_weight", check.integer, flag = "blkio-weight", arg = "N", integer = true, group = "limits",
    help = { "relative block I/O weight (10 to 1000)" } },
  { "device_read_bps", strings, flag = "device-read-bps", arg = "DEVICE:RATE", list = true,
    group = "limits", help = { "read at most RATE (1mb) a second" } },
  { "device_write_bps", strings, flag = "device-write-bps", arg = "DEVICE:RATE", list = true,
    group = "limits", help = { "write at most RATE a second" } },
  { "cgroup_parent", check.string, flag = "cgroup-parent", arg = "PATH", group = "limits",
    help = { "make the cgroup beneath PATH (relative: beneath", "luactr's own cgroup)" } },
}

-- the run's own: what it runs, from where
local COMMAND = { image = check.string, cmd = strings }

M.checks = {}  -- key -> the check of its value
for _, o in ipairs(M.LIST) do M.checks[o[1]] = o[2] end
for k, c in pairs(COMMAND) do M.checks[k] = c end

-- check(o, [where]) -> nil | message: does `o` hold only run options, of
-- the right types? ("run.memory: expected string, got boolean")
M.check = check.record(M.checks)

-- flags() -> long flag -> { short=, arg=, list=, key=, integer= }, the
-- table luactr.cli's parser takes.
function M.flags()
  local t = {}
  for _, o in ipairs(M.LIST) do
    if o.flag then
      t[o.flag] = { short = o.short, arg = o.arg ~= nil, list = o.list, key = o[1],
        integer = o.integer }
    end
  end
  return t
end

-- usage([group]) -> the help lines of the flags of `group` (nil: the
-- general ones), as `luactr run --help` prints them.
function M.usage(group)
  local lines = {}
  for _, o in ipairs(M.LIST) do
    if o.flag and o.group == group then
      local head = (o.short and ("  -%s, "):format(o.short) or "      ") .. "--" .. o.flag
        .. (o.arg and " " .. o.arg or "")
      local help = o.help or {}
      if #head < 26 then
        lines[#lines + 1] = head .. (" "):rep(26 - #head) .. (help[1] or "")
      else
        lines[#lines + 1] = head .. "  " .. (help[1] or "")
      end
      for i = 2, #help do lines[#lines + 1] = (" "):rep(26) .. help[i] end
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

return M
