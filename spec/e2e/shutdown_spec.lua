-- End-to-end: graceful shutdown. SIGTERM or SIGINT stops taking work, lets
-- the writes in flight finish, gives the leader Lease back (holder cleared,
-- duration 1 s, as client-go's ReleaseOnCancel does) and exits 0.

local S = require("spec.e2e.support")

local LEASE = "envoy-router-shutdown"

-- The operator run under a small wrapper that records its exit status
-- (the binary is not a child of this process) and passes signals on.
local WRAPPER = [[#!/bin/bash
set -m
"$E2E_REAL_BIN" "$@" &
child=$!
trap 'kill -TERM $child 2>/dev/null' TERM
trap 'kill -INT $child 2>/dev/null' INT
while :; do
  wait "$child"; rc=$?
  kill -0 "$child" 2>/dev/null || break
done
echo "$rc" > "$E2E_RC_FILE"
exit "$rc"
]]

local wrapper_path
local function start(args)
  if not wrapper_path then
    wrapper_path = os.tmpname()
    local f = assert(io.open(wrapper_path, "w"))
    f:write(WRAPPER)
    f:close()
    S.sh("chmod +x " .. S.quote(wrapper_path))
  end
  local rc_file = os.tmpname()
  os.remove(rc_file)
  local real = S.bin
  S.bin = wrapper_path
  local ok, op = pcall(S.operator, args, { E2E_REAL_BIN = real, E2E_RC_FILE = rc_file })
  S.bin = real
  assert(ok, op)
  op.rc_file = rc_file
  op.child = S.sh("pgrep -P " .. op.pid):match("%d+")
  assert(op.child, "no operator process under the wrapper")
  return op
end

-- Signals the operator itself (the wrapper, started in the background by
-- a shell, cannot trap SIGINT) and waits for the wrapper to end.
local function signal(op, sig)
  S.sh("kill -" .. sig .. " " .. op.child)
  local deadline = S.now() + 10
  while S.now() < deadline do
    if not op:alive() then return true end
    S.sleep(0.05)
  end
  return false
end

local function exit_status(op)
  local f = io.open(op.rc_file, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s)
end

-- Seconds between the log lines holding `from` and `to` (their time= stamps).
local function log_span(op, from, to)
  local function at(text)
    for line in op:log_text():gmatch("[^\n]+") do
      if line:find(text, 1, true) then
        local h, m, sec = line:match("^time=%d+%-%d+%-%d+T(%d+):(%d+):([%d.]+)Z")
        return tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(sec)
      end
    end
  end
  local a, b = at(from), at(to)
  return a and b and b - a
end

local function lease(ns)
  local l = S.get(ns, "lease", LEASE)
  return l and l.spec
end

describe("graceful shutdown", function()
  local ns
  local ops = {}
  lazy_setup(function()
    ns = S.namespace("e2e-shutdown")
  end)
  lazy_teardown(function()
    for _, op in ipairs(ops) do
      S.sh("kill -KILL " .. op.child)
      op:stop("KILL")
    end
    if wrapper_path then os.remove(wrapper_path) end
    S.cleanup(ns)
  end)

  local function leader_args(identity, extra)
    local args = { "--watch-namespace", ns, "--leader-elect", "--leader-election-id", LEASE,
      "--leader-election-namespace", ns, "--identity", identity }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    return args
  end

  it("SIGTERM without leader election: exit 0 at once", function()
    local op = start({ "--watch-namespace", ns })
    ops[#ops + 1] = op
    op:wait_ready()
    local t0 = S.now()
    assert.is_true(op:stop("TERM", 10))
    local took = S.now() - t0
    S.eventually(function() return exit_status(op) end, 5, "exit status recorded")
    assert.equal(0, exit_status(op))
    assert.truthy(op:log_text():find("envoy-router stopped", 1, true))
    local inside = log_span(op, "shutting down", "envoy-router stopped")
    print(string.format("# idle operator: stopped %.3f s after SIGTERM (process gone after %.2f s)",
      inside, took))
    assert.is_true(inside < 0.5)
    assert.is_true(took < 3)
  end)

  it("SIGTERM while writing: the writes finish, then the Lease is released, exit 0", function()
    local op = start(leader_args("stopping-leader", { "--log-level", "debug",
      "--max-concurrent-writes", "4" }))
    ops[#ops + 1] = op
    op:wait_ready()
    S.eventually(function()
      return op:metric("leader_election_master_status", { name = LEASE }) == 1
    end, 10, "leading")
    local names, statuses = {}, {}
    for i = 1, 60 do
      names[i] = string.format("busy-%02d", i)
      statuses[names[i]] = { ip = "10.80.0." .. i, ready = true }
    end
    S.pods(ns, names)
    S.pods_status(ns, statuses)
    S.eventually(function() return op:log_text():find("reconcile: writing", 1, true) end, 10,
      "writes started")
    local t0 = S.now()
    assert.is_true(op:stop("TERM", 15))
    print(string.format("# busy leader: Lease released %.3f s after SIGTERM (process gone after %.2f s)",
      log_span(op, "shutting down", "Lease released"), S.now() - t0))
    S.eventually(function() return exit_status(op) end, 5, "exit status recorded")
    assert.equal(0, exit_status(op))
    -- Every write that was started got its answer before the Lease went.
    local log = op:log_text()
    local released = log:find("leader: Lease released", 1, true)
    assert.truthy(released, "no 'Lease released' in " .. op.log)
    local before = log:sub(1, released)
    local _, started = before:gsub('msg="reconcile: writing"', "")
    local _, answered = before:gsub('msg="reconcile: wrote"', "")
    assert.is_true(started > 0)
    assert.equal(started, answered)
    print(string.format("# %d of the 180 writes done before the release", answered))
    local _, after = log:sub(released):gsub('msg="reconcile: writ', "")
    assert.equal(0, after)
    -- The Lease is free for the next replica.
    local spec = lease(ns)
    assert.equal("", spec.holderIdentity or "")
    assert.equal(1, spec.leaseDurationSeconds)
  end)

  it("SIGINT of a standby: exit 0 and the leader's Lease untouched", function()
    local leader = start(leader_args("the-leader"))
    ops[#ops + 1] = leader
    leader:wait_ready()
    S.eventually(function()
      return leader:metric("leader_election_master_status", { name = LEASE }) == 1
    end, 10, "leading")
    local standby = start(leader_args("the-standby"))
    ops[#ops + 1] = standby
    standby:wait_ready()
    local held = lease(ns)
    assert.equal("the-leader", held.holderIdentity)
    assert.is_true(signal(standby, "INT"))
    S.eventually(function() return exit_status(standby) end, 5, "exit status recorded")
    assert.equal(0, exit_status(standby))
    assert.is_nil(standby:log_text():find("Lease released", 1, true))
    assert.equal("the-leader", lease(ns).holderIdentity)
    assert.equal(held.leaseTransitions, lease(ns).leaseTransitions)
    assert.is_true(signal(leader, "INT"))
    S.eventually(function() return exit_status(leader) end, 5, "exit status recorded")
    assert.equal(0, exit_status(leader))
    assert.equal("", lease(ns).holderIdentity or "")
  end)
end)
