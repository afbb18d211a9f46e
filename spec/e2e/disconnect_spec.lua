-- The API server goes away (connections cut, or the server killed as in a
-- crash) and comes back: the operator keeps running, reconnects with
-- backoff, catches up without losing events, and keeps children right.
--
-- Which path it takes is asserted, not assumed: after a cut connection
-- the server still holds the history, so the watches resume from their
-- resourceVersion and nothing is listed again; a restarted server's watch
-- cache starts after that resourceVersion (410 Gone), so there they relist.
local S = require("spec.e2e.support")

local function slice_ip(ns, name)
  local es = S.get(ns, "endpointslice", name)
  return es and es.endpoints and es.endpoints[1].addresses[1]
end

describe("a dropped API server", function()
  local ns, op

  setup(function()
    ns = S.namespace("e2e-disconnect")
    S.pod(ns, "d1")
    S.pod_status(ns, "d1", { ip = "10.30.0.1", ready = true })
    op = S.operator({ "--watch-namespace", ns })
    op:wait_ready()
    S.eventually(function() return slice_ip(ns, "d1") == "10.30.0.1" end, 5)
  end)

  teardown(function()
    if op then op:stop() end
  end)

  it("cut connections: the watches resume, nothing is listed again, nothing is lost", function()
    local relists0 = op:metric("envoy_router_watch_relists_total")
    local resumes0 = op:metric("envoy_router_watch_resumes_total", { resource = "pods" })
    assert.is_true(S.cut_connections(op.pid) >= 1, "a connection to cut")
    -- Changes made before the operator has reconnected arrive through the
    -- resumed watches.
    S.pod_status(ns, "d1", { ip = "10.30.0.5", ready = true })
    S.pod(ns, "d0")
    S.pod_status(ns, "d0", { ip = "10.30.0.10", ready = true })
    S.eventually(function() return slice_ip(ns, "d1") == "10.30.0.5" end, 20, "d1 updated")
    S.eventually(function() return slice_ip(ns, "d0") == "10.30.0.10" end, 20, "d0 created")
    assert.is_true(op:alive())
    local resumes = op:metric("envoy_router_watch_resumes_total", { resource = "pods" })
    assert.is_true(resumes > resumes0, "the pod watch resumed: " .. resumes0 .. " -> " .. resumes)
    assert.are.equal(relists0, op:metric("envoy_router_watch_relists_total"),
      "nothing was listed again")
  end)

  it("a killed and restarted server is survived, and what changed right after is not lost",
    function()
    local before = op:metric("envoy_router_watch_relists_total")
      + op:metric("envoy_router_watch_resumes_total")
    local _, ok, err = S.sh(S.quote((os.getenv("ENVOY_ROUTER_ROOT") or ".") .. "/tools/cluster.sh")
      .. " restart-apiserver")
    assert.is_true(ok, err)
    -- Changes made before the operator has reconnected.
    S.pod_status(ns, "d1", { ip = "10.30.0.9", ready = true })
    S.pod(ns, "d2")
    S.pod_status(ns, "d2", { ip = "10.30.0.2", ready = true })
    assert.is_true(op:alive())
    S.eventually(function() return slice_ip(ns, "d1") == "10.30.0.9" end, 20, "d1 updated")
    S.eventually(function() return slice_ip(ns, "d2") == "10.30.0.2" end, 20, "d2 created")
    assert.is_true(op:alive())
    local restarts = op:metric("envoy_router_watch_restarts_total")
    assert.is_true(restarts >= 4, "watch restarts counted: " .. restarts)
    local after = op:metric("envoy_router_watch_relists_total")
      + op:metric("envoy_router_watch_resumes_total")
    assert.is_true(after > before, "the watches came back (relist or resume)")
  end)

  it("keeps children right afterwards", function()
    S.must("delete endpointslice d2 -n " .. ns)
    S.eventually(function() return slice_ip(ns, "d2") == "10.30.0.2" end, 5, "d2 restored")
    local _, code = op:http(op.health_port, "/readyz")
    assert.are.equal(200, code)
  end)
end)
