-- luactr.spec.seccomp: seccomp profiles, as data.
--
-- A profile is written in Docker's JSON profile format (as a Lua table or
-- a .json file): defaultAction, defaultErrnoRet, architectures or archMap,
-- and syscalls whose entries may hold `includes` and `excludes` (caps,
-- arches, minKernel). resolve() turns it into the plain OCI
-- `linux.seccomp` of one container, given that container's bounding set,
-- and core.spawn compiles that with libseccomp.
--
--   local p = seccomp.load("/etc/profile.json")       -- or seccomp.DEFAULT
--   spec.linux.seccomp = seccomp.resolve(p, spec.process.capabilities.bounding)
--   seccomp.cache_dir()   -- where compiled filters are kept, for spawn
local check = require "luactr.check"

local M = {}

-- {====== Docker's default profile ======
--
-- The same rules as moby's profiles/seccomp/default.json: an allowlist,
-- EPERM for everything else, more calls for more capabilities, and
-- argument filters where a call is harmless only with some arguments.
-- io_uring_setup, _enter and _register are left out, as Docker has since
-- its 25.0: the ring's operations are system calls the filter never sees.

local ALLOWED = {
  "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk",
  "capget", "capset", "chdir", "chmod", "chown", "chown32",
  "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
  "clock_gettime", "clock_gettime64", "clock_nanosleep",
  "clock_nanosleep_time64", "close", "close_range", "connect",
  "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
  "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
  "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
  "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2",
  "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir",
  "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64",
  "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
  "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64",
  "fsync", "ftruncate", "ftruncate64", "futex", "futex_time64",
  "futex_waitv", "futimesat", "getcpu", "getcwd", "getdents", "getdents64",
  "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
  "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid",
  "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
  "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list",
  "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
  "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
  "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
  "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents",
  "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup",
  "io_submit",
  "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
  "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link",
  "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr",
  "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "membarrier",
  "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod",
  "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
  "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
  "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
  "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync",
  "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
  "newfstatat", "_newselect", "open", "openat", "openat2", "pause",
  "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc",
  "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl",
  "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease",
  "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read",
  "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
  "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages",
  "removexattr", "rename", "renameat", "renameat2", "restart_syscall",
  "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
  "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
  "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity",
  "sched_getattr", "sched_getparam", "sched_get_priority_max",
  "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
  "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
  "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp",
  "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64",
  "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto",
  "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
  "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority",
  "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
  "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list",
  "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid",
  "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown",
  "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn",
  "socketcall", "socketpair", "splice", "stat", "stat64", "statfs",
  "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
  "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
  "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64",
  "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
  "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
  "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname",
  "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
  "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
}

local ALLOW = "SCMP_ACT_ALLOW"

-- The namespace flags of clone: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
-- NEWUSER, NEWPID, NEWNET. Without CAP_SYS_ADMIN, clone may set none.
local CLONE_NEW_FLAGS = 0x7E020000
local AF_VSOCK = 40
local ENOSYS = 38

local function allow_with(caps, names)
  return { names = names, action = ALLOW, includes = { caps = caps } }
end

local function persona(value)
  return { names = { "personality" }, action = ALLOW,
           args = { { index = 0, value = value, op = "SCMP_CMP_EQ" } } }
end

M.DEFAULT = {
  defaultAction = "SCMP_ACT_ERRNO",
  defaultErrnoRet = 1,  -- EPERM
  archMap = {
    { architecture = "SCMP_ARCH_X86_64", subArchitectures = { "SCMP_ARCH_X86", "SCMP_ARCH_X32" } },
    { architecture = "SCMP_ARCH_AARCH64", subArchitectures = { "SCMP_ARCH_ARM" } },
    { architecture = "SCMP_ARCH_MIPS64", subArchitectures = { "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32" } },
    { architecture = "SCMP_ARCH_MIPS64N32", subArchitectures = { "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64" } },
    { architecture = "SCMP_ARCH_MIPSEL64", subArchitectures = { "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32" } },
    { architecture = "SCMP_ARCH_MIPSEL64N32", subArchitectures = { "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64" } },
    { architecture = "SCMP_ARCH_S390X", subArchitectures = { "SCMP_ARCH_S390" } },
    { architecture = "SCMP_ARCH_RISCV64" },
  },
  syscalls = {
    { names = ALLOWED, action = ALLOW },
    { names = { "process_vm_readv", "process_vm_writev", "ptrace" }, action = ALLOW,
      includes = { minKernel = "4.8" } },
    { names = { "socket" }, action = ALLOW,
      args = { { index = 0, value = AF_VSOCK, op = "SCMP_CMP_NE" } } },
    -- the personas of linux32/linux64 and "query"; none that changes
    -- address-space randomisation or the like
    persona(0x0), persona(0x0008), persona(0x20000), persona(0x20008), persona(0xffffffff),
    { names = { "sync_file_range2", "swapcontext" }, action = ALLOW,
      includes = { arches = { "ppc64le" } } },
    { names = { "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2",
                "breakpoint", "cacheflush", "set_tls" }, action = ALLOW,
      includes = { arches = { "arm", "arm64" } } },
    { names = { "arch_prctl" }, action = ALLOW, includes = { arches = { "amd64", "x32" } } },
    { names = { "modify_ldt" }, action = ALLOW, includes = { arches = { "amd64", "x32", "x86" } } },
    { names = { "s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr" },
      action = ALLOW, includes = { arches = { "s390", "s390x" } } },
    { names = { "riscv_flush_icache" }, action = ALLOW, includes = { arches = { "riscv64" } } },
    allow_with({ "CAP_DAC_READ_SEARCH" }, { "open_by_handle_at" }),
    allow_with({ "CAP_SYS_ADMIN" }, {
      "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount",
      "fsopen", "fspick", "lookup_dcookie", "mount", "mount_setattr",
      "move_mount", "open_tree", "perf_event_open", "quotactl", "quotactl_fd",
      "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2",
      "unshare" }),
    { names = { "clone" }, action = ALLOW,
      args = { { index = 0, value = CLONE_NEW_FLAGS, valueTwo = 0, op = "SCMP_CMP_MASKED_EQ" } },
      excludes = { caps = { "CAP_SYS_ADMIN" }, arches = { "s390", "s390x" } } },
    { names = { "clone" }, action = ALLOW,
      args = { { index = 1, value = CLONE_NEW_FLAGS, valueTwo = 0, op = "SCMP_CMP_MASKED_EQ" } },
      comment = "s390 parameter ordering for clone is different",
      includes = { arches = { "s390", "s390x" } }, excludes = { caps = { "CAP_SYS_ADMIN" } } },
    -- clone3 passes its flags in memory, where a filter cannot look:
    -- ENOSYS makes libc fall back to clone, whose flags it can check
    { names = { "clone3" }, action = "SCMP_ACT_ERRNO", errnoRet = ENOSYS,
      excludes = { caps = { "CAP_SYS_ADMIN" } } },
    allow_with({ "CAP_SYS_BOOT" }, { "reboot" }),
    allow_with({ "CAP_SYS_CHROOT" }, { "chroot" }),
    allow_with({ "CAP_SYS_MODULE" }, { "delete_module", "init_module", "finit_module" }),
    allow_with({ "CAP_SYS_PACCT" }, { "acct" }),
    allow_with({ "CAP_SYS_PTRACE" }, { "kcmp", "pidfd_getfd", "process_madvise",
                                       "process_vm_readv", "process_vm_writev", "ptrace" }),
    allow_with({ "CAP_SYS_RAWIO" }, { "iopl", "ioperm" }),
    allow_with({ "CAP_SYS_TIME" }, { "settimeofday", "stime", "clock_settime", "clock_settime64" }),
    allow_with({ "CAP_SYS_TTY_CONFIG" }, { "vhangup" }),
    allow_with({ "CAP_SYS_NICE" }, { "get_mempolicy", "mbind", "set_mempolicy",
                                     "set_mempolicy_home_node" }),
    allow_with({ "CAP_SYSLOG" }, { "syslog" }),
    allow_with({ "CAP_BPF" }, { "bpf" }),
    allow_with({ "CAP_PERFMON" }, { "perf_event_open" }),
  },
}

-- }======

-- {====== checking a profile ======

local strings = check.array(check.string)
local filter = check.record({ caps = strings, arches = strings, minKernel = check.string })
local arg = check.record({ index = check.integer, value = check.integer,
  valueTwo = check.integer, op = check.string }, { "index", "op" })

local profile_schema = check.record({
  defaultAction = check.string,
  defaultErrnoRet = check.integer,
  architectures = strings,
  archMap = check.array(check.record({ architecture = check.string,
    subArchitectures = strings }, { "architecture" })),
  flags = strings,
  syscalls = check.array(check.record({
    name = check.string, names = strings, action = check.string,
    errnoRet = check.integer, args = check.array(arg), comment = check.string,
    includes = filter, excludes = filter,
  }, { "action" })),
}, { "defaultAction" })

-- check(profile, path) -> nil | message naming the field that is wrong
function M.check(profile, path)
  local msg = profile_schema(profile, path or "seccomp")
  if msg then return msg end
  if profile.architectures and profile.archMap then
    return ("%s: give either architectures or archMap, not both"):format(path or "seccomp")
  end
  for i, call in ipairs(profile.syscalls or {}) do
    if (call.name ~= nil) == (call.names ~= nil) then
      return ("%s.syscalls[%d]: give either name or names"):format(path or "seccomp", i)
    end
  end
  return nil
end

-- JSON's null means "not given" in a profile.
local function drop_nulls(v, null)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do
    if x ~= null then t[k] = drop_nulls(x, null) end
  end
  return t
end

-- load(path) -> profile | nil, message
-- Reads a profile in Docker's JSON format and checks it.
function M.load(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  local json = require "luactr.json"
  local v, jerr = json.decode(text)
  if v == nil then return nil, ("%s: %s"):format(path, jerr) end
  v = drop_nulls(v, json.null)
  local msg = M.check(v, path)
  if msg then return nil, msg end
  return v
end

-- }======

-- {====== resolving a profile for one container ======

-- Docker's names for the architectures in includes/excludes.arches (Go's).
local GO_ARCH = {
  SCMP_ARCH_X86 = "x86", SCMP_ARCH_X86_64 = "amd64", SCMP_ARCH_ARM = "arm",
  SCMP_ARCH_AARCH64 = "arm64", SCMP_ARCH_MIPS64 = "mips64",
  SCMP_ARCH_MIPS64N32 = "mips64n32", SCMP_ARCH_MIPSEL64 = "mipsel64",
  SCMP_ARCH_MIPSEL64N32 = "mips3l64n32", SCMP_ARCH_MIPSEL = "mipsle",
  SCMP_ARCH_PPC = "ppc", SCMP_ARCH_PPC64 = "ppc64", SCMP_ARCH_PPC64LE = "ppc64le",
  SCMP_ARCH_S390 = "s390", SCMP_ARCH_S390X = "s390x", SCMP_ARCH_RISCV64 = "riscv64",
}

local native
-- The machine's architecture, by its OCI name ("SCMP_ARCH_X86_64").
function M.native_arch()
  if not native then native = require("luactr.core").seccomp.native_arch() end
  return native
end

local kernel
-- Is the running kernel at least `version` ("4.8")?
local function kernel_at_least(version)
  if not kernel then
    local f = io.open("/proc/sys/kernel/osrelease")
    local release = f and f:read("l") or "0.0"
    if f then f:close() end
    local major, minor = release:match("^(%d+)%.(%d+)")
    kernel = { tonumber(major) or 0, tonumber(minor) or 0 }
  end
  local major, minor = version:match("^(%d+)%.?(%d*)")
  if not major then error(("seccomp: bad minKernel '%s'"):format(version), 0) end
  major, minor = tonumber(major), tonumber(minor) or 0
  return kernel[1] > major or (kernel[1] == major and kernel[2] >= minor)
end

local function contains(list, x)
  for _, y in ipairs(list or {}) do
    if y == x then return true end
  end
  return false
end

-- Does a syscalls entry apply to a container with the bounding set `has`
-- (a set of names) on architecture `arch` (Docker's name)? Docker's rules:
-- every included capability, any excluded one.
local function applies(call, has, arch)
  local ex, inc = call.excludes or {}, call.includes or {}
  if contains(ex.arches, arch) then return false end
  for _, c in ipairs(ex.caps or {}) do
    if has[c] then return false end
  end
  if ex.minKernel and kernel_at_least(ex.minKernel) then return false end
  if inc.arches and #inc.arches > 0 and not contains(inc.arches, arch) then return false end
  for _, c in ipairs(inc.caps or {}) do
    if not has[c] then return false end
  end
  if inc.minKernel and not kernel_at_least(inc.minKernel) then return false end
  return true
end

-- resolve(profile, bounding) -> the OCI linux.seccomp of a container
-- whose bounding set is `bounding` (an array of "CAP_..." names).
function M.resolve(profile, bounding)
  local has = {}
  for _, c in ipairs(bounding or {}) do has[c] = true end
  local arch = M.native_arch()
  local out = { defaultAction = profile.defaultAction,
                defaultErrnoRet = profile.defaultErrnoRet, flags = profile.flags }
  if profile.architectures then
    out.architectures = profile.architectures
  elseif profile.archMap then
    for _, a in ipairs(profile.archMap) do
      if a.architecture == arch then
        out.architectures = { arch }
        for _, sub in ipairs(a.subArchitectures or {}) do
          out.architectures[#out.architectures + 1] = sub
        end
      end
    end
  end
  local syscalls = {}
  for _, call in ipairs(profile.syscalls or {}) do
    if applies(call, has, GO_ARCH[arch]) then
      syscalls[#syscalls + 1] = { names = call.names or { call.name },
        action = call.action, errnoRet = call.errnoRet, args = call.args }
    end
  end
  out.syscalls = syscalls
  return out
end

-- }======

-- {====== the cache of compiled filters ======

-- cache_dir() -> the folder for spawn's opts.seccomp_cache (and
-- core.seccomp.compile's `cache`), or nil for none. Every start goes
-- through it (run, run -d and its restarts, exec, build steps):
-- compiling Docker's profile with libseccomp costs milliseconds, every
-- start, and loading it from the cache some tens of microseconds; and a
-- kept filter is compiled into the one that is cheapest to install.
-- It is seccomp/ in the run root (luactr.paths.run_base): a
-- tmpfs by default, so a reboot (a new kernel, a new libseccomp) starts it
-- afresh; the key of each filter holds those and the profile anyway (see
-- src/seccomp.c). Nothing is evicted: a file per profile and build of
-- luactr, a few KiB each. A relative run root has none.
function M.cache_dir()
  local runroot = require("luactr.paths").run_base()
  if runroot:sub(1, 1) ~= "/" then return nil end  -- relative: no cache
  return runroot .. "/seccomp"
end

-- }======

return M
