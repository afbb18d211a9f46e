-- End-to-end: a standby replica (caches warm, the Lease held by another)
-- sleeps between events. Its queue holds every pod key it may not take; the
-- loop must not spin on them.

local S = require("spec.e2e.support")

local LEASE = "envoy-router-standby"

-- CPU seconds (user + system) the process has used so far.
local function cpu_seconds(pid)
  local f = assert(io.open("/proc/" .. pid .. "/stat", "r"))
  local stat = f:read("a")
  f:close()
  -- Fields after the command name (which may hold spaces) in parentheses.
  local rest = stat:match("%) (.*)$")
  local fields = {}
  for v in rest:gmatch("%S+") do fields[#fields + 1] = v end
  -- utime and stime are fields 14 and 15 of the line, 12 and 13 of rest.
  local ticks = tonumber(fields[12]) + tonumber(fields[13])
  local hz = tonumber(S.sh("getconf CLK_TCK"):match("%d+")) or 100
  return ticks / hz
end

describe("a standby replica", function()
  local ns
  local ops = {}

  lazy_setup(function()
    ns = S.namespace("e2e-standby")
    local names, statuses = {}, {}
    for i = 1, 20 do
      names[i] = "sb-" .. i
      statuses[names[i]] = { ip = "10.61.0." .. i, ready = true }
    end
    S.pods(ns, names)
    S.pods_status(ns, statuses)
  end)
  lazy_teardown(function()
    for _, op in ipairs(ops) do op:stop("KILL") end
    S.cleanup(ns)
  end)

  local function start(identity)
    local op = S.operator({ "--watch-namespace", ns, "--leader-elect",
      "--leader-election-id", LEASE, "--leader-election-namespace", ns,
      "--identity", identity })
    ops[#ops + 1] = op
    return op
  end

  it("uses next to no CPU over 10 s while its queue holds keys", function()
    local a = start("leader")
    a:wait_ready()
    S.eventually(function()
      return a:metric("leader_election_master_status", { name = LEASE }) == 1
    end, 10, "the first replica leads")
    local b = start("standby")
    b:wait_ready()
    -- The standby's queue holds every pod (it took none).
    S.eventually(function()
      return b:metric("workqueue_depth", { name = "pod" }) >= 20
    end, 10, "the standby's queue holds the pods")
    local c0, t0 = cpu_seconds(b.pid), S.now()
    S.sleep(10)
    local used, wall = cpu_seconds(b.pid) - c0, S.now() - t0
    print(string.format("# standby CPU over %.1f s: %.2f s (%.1f%%)", wall, used,
      100 * used / wall))
    -- Before the fix it spun at about half a core (~5 s here).
    assert.is_true(used < 0.5, string.format("standby used %.2f s of CPU in %.1f s", used, wall))
    assert.is_true(b:alive())
    assert.equal(0, b:writes())
    local _, ready = b:http(b.health_port, "/readyz")
    assert.equal(200, ready)
  end)
end)
