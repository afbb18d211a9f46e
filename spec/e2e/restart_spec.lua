-- End-to-end: the operator started after the fact. Pods created while it
-- was down are handled when it starts; a restart with everything in place
-- writes nothing; with no --watch-namespace it serves every namespace.

local S = require("spec.e2e.support")

local function count_children(ns)
  local n = {}
  for _, o in ipairs(S.list(ns, "services,endpointslices,httproutes",
      "app.kubernetes.io/managed-by=envoy-router")) do
    n[o.kind] = (n[o.kind] or 0) + 1
  end
  return n
end

local function has_all(ns, want)
  local n = count_children(ns)
  return n.Service == want and n.EndpointSlice == want and n.HTTPRoute == want
end

-- What the operator wrote and why, from its log, for failure messages. Writes
-- that fix `spec.parentRefs` usually mean another envoy-router with other
-- flags watches all namespaces of the same cluster.
local function writes_explained(op)
  local n = {}
  for verb, kind, why in op:log_text():gmatch('reconcile: writing" [^\n]-verb=(%S+) kind=(%S+) [^\n]-differs=(%S*)') do
    local k = verb .. " " .. kind .. " " .. why
    n[k] = (n[k] or 0) + 1
  end
  local out = {}
  for k, c in pairs(n) do out[#out + 1] = c .. " x " .. k end
  table.sort(out)
  return "writes: " .. table.concat(out, "; ") .. " (log " .. op.log .. ")"
end

describe("pods created while the operator was down", function()
  local ns, op
  lazy_setup(function()
    ns = S.namespace("e2e-down")
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(ns)
  end)

  it("get their children when it starts", function()
    S.pod(ns, "early-1")
    S.pod(ns, "early-2")
    S.pod_status(ns, "early-1", { ip = "10.40.0.1", ready = true })
    S.pod_status(ns, "early-2", { ip = "10.40.0.2", ready = false })
    assert.same({}, count_children(ns))
    op = S.operator({ "--watch-namespace", ns })
    op:wait_ready()
    S.eventually(function() return has_all(ns, 2) end, 10, "children of both pods")
    local es = S.get(ns, "endpointslice", "early-2")
    assert.same({ "10.40.0.2" }, es.endpoints[1].addresses)
    assert.is_false(es.endpoints[1].conditions.ready)
  end)
end)

-- Removes a namespace of many pods and children quickly, the operators
-- stopped: the Services by one collection delete with Background
-- propagation (which takes their foregroundDeletion finalizer off, so the
-- garbage collector, at 20 requests/s, has nothing to finish), the rest by
-- collection deletes; then the namespace. Waits until the pods are gone, so
-- an operator watching all namespaces in a later spec does not see them.
local function cleanup_many(ns)
  local background = { apiVersion = "v1", kind = "DeleteOptions", propagationPolicy = "Background" }
  local reqs = {}
  for _, path in ipairs({ "/api/v1/namespaces/" .. ns .. "/services",
      "/apis/discovery.k8s.io/v1/namespaces/" .. ns .. "/endpointslices",
      "/apis/gateway.networking.k8s.io/v1/namespaces/" .. ns .. "/httproutes",
      "/api/v1/namespaces/" .. ns .. "/pods" }) do
    reqs[#reqs + 1] = { method = "DELETE", path = path, body = background }
  end
  local codes = S.api_many(reqs)
  local gone, err = pcall(S.eventually, function() return #S.list(ns, "pods") == 0 end, 60,
    "pods of " .. ns .. " gone")
  S.cleanup(ns)   -- whatever happened above
  assert.same({ 200, 200, 200, 200 }, codes)
  assert(gone, err)
end

-- 1,000 pods, as issue 12 asks: the restart must stay write-free at the
-- size where a per-object difference (a default the API server adds, a
-- hash that depends on map order) would show many times over.
describe("a restart with 1,000 managed pods in place", function()
  local ns, first, second
  local N = 1000
  lazy_setup(function()
    ns = S.namespace("e2e-restart")
    local names, statuses = {}, {}
    for i = 1, N do
      names[i] = string.format("nb-%04d", i)
      statuses[names[i]] = { ip = string.format("10.41.%d.%d", i // 250, i % 250 + 1),
                             ready = i % 3 ~= 0 }
    end
    S.pods(ns, names)
    S.pods_status(ns, statuses)
    first = S.operator({ "--watch-namespace", ns })
    first:wait_ready()
    S.eventually(function() return has_all(ns, N) end, 180, N .. " pods' children")
    S.eventually(function() return first:idle() end, 10, "first operator idle")
    assert.is_true(first:stop())
  end)
  lazy_teardown(function()
    if first then first:stop() end
    if second then second:stop() end
    cleanup_many(ns)
  end)

  it("makes no write request once its caches synced and its queue drained", function()
    second = S.operator({ "--watch-namespace", ns })
    second:wait_ready()
    -- every pod is looked at once after the initial list
    S.eventually(function()
      return second:metric("controller_runtime_reconcile_total") >= N and second:idle()
    end, 90, "all " .. N .. " pods reconciled")
    S.sleep(2)
    assert.is_true(second:idle())
    assert.equal(0, second:writes(), writes_explained(second))
    assert.equal(0, second:metric("controller_runtime_reconcile_errors_total"))
  end)

  it("reports the managed pods from what it found, not from what it did", function()
    S.eventually(function()
      return second:metric("envoy_router_managed_pods") == N
    end, 5, "envoy_router_managed_pods == " .. N)
  end)

  it("still answers a change at once after the quiet start", function()
    S.pod_status(ns, "nb-0001", { ip = "10.41.9.9", ready = true })
    S.eventually(function()
      return S.get(ns, "endpointslice", "nb-0001").endpoints[1].addresses[1] == "10.41.9.9"
    end, 5, "nb-0001's new IP")
    assert.equal(1, second:writes(), writes_explained(second))
  end)
end)

describe("an operator watching all namespaces", function()
  local a, b, op
  lazy_setup(function()
    a = S.namespace("e2e-all-a")
    b = S.namespace("e2e-all-b")
    op = S.operator({})
    op:wait_ready()
    S.pod(a, "same-name")
    S.pod(b, "same-name")
    S.pod_status(a, "same-name", { ip = "10.42.0.1", ready = true })
    S.pod_status(b, "same-name", { ip = "10.42.0.2", ready = true })
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(a)
    S.cleanup(b)
  end)

  it("gives pods of the same name in two namespaces each their own children", function()
    S.eventually(function() return has_all(a, 1) and has_all(b, 1) end, 10, "children in both")
    for ns, ip in pairs({ [a] = "10.42.0.1", [b] = "10.42.0.2" }) do
      local pod = S.get(ns, "pod", "same-name")
      local es = S.get(ns, "endpointslice", "same-name")
      assert.same({ ip }, es.endpoints[1].addresses)
      assert.equal(pod.metadata.uid, es.metadata.ownerReferences[1].uid)
      assert.equal(ns, es.endpoints[1].targetRef.namespace)
      local rt = S.get(ns, "httproute", "same-name")
      assert.equal("/same-name", rt.spec.rules[1].matches[1].path.value)
      assert.is_nil(rt.spec.parentRefs[1].namespace)
    end
  end)

  it("removes only the deleted pod's children", function()
    S.must("delete pod same-name -n " .. a .. " --grace-period=0 --force --wait=true")
    S.eventually(function() return next(count_children(a)) == nil end, 5, "children in " .. a .. " gone")
    assert.is_true(has_all(b, 1))
  end)
end)

describe("watch health metrics", function()
  local ns, op
  lazy_setup(function()
    ns = S.namespace("e2e-metrics")
    op = S.operator({ "--watch-namespace", ns })
    op:wait_ready()
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(ns)
  end)

  it("exports envoy_router_watch_restarts_total for every watched resource from the start", function()
    local body = op:http(op.metrics_port, "/metrics")
    assert.truthy(body:find("# TYPE envoy_router_watch_restarts_total counter", 1, true))
    local m = op:metrics()
    for _, res in ipairs({ "pods", "services", "endpointslices", "httproutes" }) do
      local k = string.format('envoy_router_watch_restarts_total{resource="%s",reason="disconnected"}', res)
      assert.equal(0, m[k], k)
    end
  end)
end)
