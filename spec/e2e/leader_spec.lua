-- End-to-end: leader election through a Lease. Replicas with the same
-- --leader-election-id agree on one writer; standbys keep their caches warm,
-- answer /readyz and write nothing; a crashed leader is replaced once its
-- lease runs out (15 s), a leader stopped with SIGTERM hands over at once.

local S = require("spec.e2e.support")

local LEASE = "envoy-router-e2e"

local function leading(op)
  return op:metric("leader_election_master_status", { name = LEASE }) == 1
end

local function has_children(ns, pod)
  local n = S.children_of(ns, pod)
  return n.Service == 1 and n.EndpointSlice == 1 and n.HTTPRoute == 1
end

-- op itself created children for `pod` (not some other operator that may
-- be running over all namespaces meanwhile).
local function wrote_for(op, ns, pod)
  return op:log_text():find("pod=" .. ns .. "/" .. pod .. " verb=create", 1, true) ~= nil
end

local function lease(ns)
  local l = S.get(ns, "lease", LEASE)
  return l and l.spec
end

describe("leader election", function()
  local ns
  local ops = {}
  local ip = 0

  local function start(identity)
    local op = S.operator({ "--watch-namespace", ns, "--leader-elect",
      "--leader-election-id", LEASE, "--leader-election-namespace", ns,
      "--identity", identity })
    ops[#ops + 1] = op
    return op
  end

  local function new_pod(name)
    ip = ip + 1
    S.pod(ns, name)
    S.pod_status(ns, name, { ip = "10.60.0." .. ip, ready = true })
  end

  lazy_setup(function()
    ns = S.namespace("e2e-leader")
  end)
  lazy_teardown(function()
    for _, op in ipairs(ops) do op:stop("KILL") end
    S.cleanup(ns)
  end)

  local a, b, c

  it("one replica leads and writes; the standby is ready and writes nothing", function()
    a = start("replica-a")
    a:wait_ready()
    S.eventually(function() return leading(a) end, 10, "replica-a leads")
    b = start("replica-b")
    b:wait_ready()
    -- A user's Service holds one pod's name: a problem both replicas see,
    -- which only the leader reports as an Event.
    S.apply({ apiVersion = "v1", kind = "Service", metadata = { name = "first-3", namespace = ns },
              spec = { ports = { { port = 80 } } } })
    new_pod("first-1")
    new_pod("first-2")
    new_pod("first-3")
    S.eventually(function() return has_children(ns, "first-1") and has_children(ns, "first-2") end,
      10, "the leader made the children")
    S.eventually(function()
      for _, e in ipairs(S.list(ns, "events")) do
        if e.reason == "NameConflict" and e.involvedObject.name == "first-3"
            and e.reportingInstance == "replica-a" then
          return e
        end
      end
    end, 10, "the leader's NameConflict Event")
    assert.is_true(wrote_for(a, ns, "first-1"))
    assert.is_true(a:writes() > 0)
    -- The standby sees the same pods and children, yet stays out of it.
    S.never(function() return b:writes() > 0 or leading(b) end, 3, "the standby wrote")
    assert.equal(0, b:writes())
    assert.equal(0, b:metric("leader_election_master_status", { name = LEASE }))
    assert.equal(0, b:metric("envoy_router_events_total"))
    for _, e in ipairs(S.list(ns, "events")) do
      assert.are_not.equal("replica-b", e.reportingInstance)
    end
    local _, ready = b:http(b.health_port, "/readyz")
    assert.equal(200, ready)
    local _, healthy = b:http(b.health_port, "/healthz")
    assert.equal(200, healthy)
    local _, ready_a = a:http(a.health_port, "/readyz")
    assert.equal(200, ready_a)
    local spec = lease(ns)
    assert.equal("replica-a", spec.holderIdentity)
    assert.equal(15, spec.leaseDurationSeconds)
    assert.equal(0, spec.leaseTransitions)
  end)

  it("a killed leader is replaced within 20 s, and the new leader writes", function()
    local writes_before = b:writes()
    assert.equal(0, writes_before)
    local t0 = S.now()
    a:stop("KILL")
    new_pod("after-kill")
    S.eventually(function() return leading(b) end, 25, "replica-b takes over")
    local took_lead = S.now() - t0
    S.eventually(function() return has_children(ns, "after-kill") end, 10,
      "children of a pod created while nobody led")
    local took = S.now() - t0
    print(string.format("# SIGKILL: replica-b leads after %.1f s, new pod served after %.1f s",
      took_lead, took))
    assert.is_true(took < 20, string.format("took %.1f s", took))
    -- Not before the lease (15 s from the last renewal it saw) ran out.
    assert.is_true(took_lead > 12, string.format("took over after only %.1f s", took_lead))
    assert.is_true(wrote_for(b, ns, "after-kill"))
    assert.is_true(b:writes() > 0)
    local spec = lease(ns)
    assert.equal("replica-b", spec.holderIdentity)
    assert.equal(1, spec.leaseTransitions)
  end)

  it("a leader stopped with SIGTERM hands over within 3 s", function()
    c = start("replica-c")
    c:wait_ready()
    S.never(function() return leading(c) end, 2.5, "replica-c leads while replica-b does")
    assert.equal(0, c:writes())
    local t0 = S.now()
    S.sh("kill -TERM " .. b.pid)
    S.eventually(function() return leading(c) end, 10, "replica-c takes over")
    local took = S.now() - t0
    assert.is_true(b:stop("TERM", 10), "replica-b exits")
    local stopped = S.now() - t0
    new_pod("after-term")
    S.eventually(function() return has_children(ns, "after-term") end, 10, "children via replica-c")
    assert.is_true(wrote_for(c, ns, "after-term"))
    print(string.format("# SIGTERM: replica-c leads after %.2f s (replica-b gone after %.2f s)",
      took, stopped))
    assert.is_true(took < 3, string.format("handover took %.2f s", took))
    assert.truthy(b:log_text():find("Lease released", 1, true))
    local spec = lease(ns)
    assert.equal("replica-c", spec.holderIdentity)
    assert.equal(2, spec.leaseTransitions)
  end)
end)

describe("without --leader-elect", function()
  local ns, op
  lazy_setup(function()
    ns = S.namespace("e2e-noleader")
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(ns)
  end)

  it("the process leads at once and takes no Lease", function()
    op = S.operator({ "--watch-namespace", ns, "--leader-election-namespace", ns })
    op:wait_ready()
    assert.equal(1, op:metric("leader_election_master_status", { name = "envoy-router" }))
    S.pod(ns, "solo")
    S.pod_status(ns, "solo", { ip = "10.60.1.1", ready = true })
    S.eventually(function() return has_children(ns, "solo") end, 10, "children")
    assert.same({}, S.list(ns, "leases"))
  end)
end)
