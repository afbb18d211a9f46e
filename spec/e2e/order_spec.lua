-- End-to-end: a pod's HTTPRoute is deleted before the Service it points at
-- and, where the operator deletes them, before its EndpointSlice. Envoy
-- Gateway answers 500 for a route whose Service is gone; with the route gone
-- first a deleted pod's path goes 503 (not ready, terminating, or no
-- endpoints once the EndpointSlice is gone) and then 404, never 500.
--
-- The order is read from the API server itself: a watch on each of the
-- three kinds records the DELETED events, and the resourceVersion of a
-- DELETED event is the etcd revision of that deletion (one counter for the
-- whole store), so comparing them orders deletions across kinds no matter
-- in which order the three streams reach the spec.
--
-- Paths: the pod deleted gracefully and then gone (its Service and
-- EndpointSlice lose their owners while it terminates, and the operator
-- deletes them the drain delay after the route), deleted by force, its
-- label removed (the operator deletes the children itself, with the same
-- delay), deleted while no operator runs (uninstalled): the garbage
-- collector alone must keep the order, which is why the route names the
-- Service as a blocking owner and the Service carries the collector's
-- finalizer foregroundDeletion; the EndpointSlice, owned by the pod alone,
-- may go at any time then), and terminated then gone while the operator
-- was down (a restarted one deletes the leftovers).

local cjson = require("cjson")
local S = require("spec.e2e.support")

local KINDS = {
  HTTPRoute = "/apis/gateway.networking.k8s.io/v1/namespaces/%s/httproutes",
  Service = "/api/v1/namespaces/%s/services",
  EndpointSlice = "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices",
}

-- Watches the three kinds in `ns` (one curl process each, output in files).
local function record(ns)
  local api = S.api_base()
  local rec = { files = {}, pids = {} }
  for kind, path in pairs(KINDS) do
    local file = os.tmpname()
    local url = api.server .. string.format(path, ns) .. "?watch=1&timeoutSeconds=300"
    -- Each line stamped with the time it arrived (perl runs the curl and
    -- stops it when stopped itself).
    local stamp = [[$|=1; my $p = open(my $c, "-|", @ARGV) or die; ]]
      .. [[$SIG{TERM} = sub { kill "TERM", $p; exit 0 }; ]]
      .. [[while (<$c>) { printf "%.3f %s", Time::HiRes::time(), $_ }]]
    local pid = S.sh(string.format(
      "(perl -MTime::HiRes -e %s curl -sN --cacert %s -H %s %s >%s 2>/dev/null & echo $!)",
      S.quote(stamp), S.quote(api.cacert),
      S.quote("Authorization: Bearer " .. api.token), S.quote(url), file)):match("%d+")
    rec.files[kind], rec.pids[#rec.pids + 1] = file, pid
  end
  return rec
end

-- { [kind] = { [name] = { ADDED = rv, DELETED = rv, ..., at = { DELETED =
-- seconds the event arrived, ... } } } } so far.
local function events(rec)
  local out = {}
  for kind, file in pairs(rec.files) do
    out[kind] = {}
    local f = io.open(file, "r")
    for stamp, line in (f and f:read("a") or ""):gmatch("([%d.]+) ([^\n]+)") do
      local ok, ev = pcall(cjson.decode, line)
      if ok and type(ev.object) == "table" and ev.object.metadata then
        local md = ev.object.metadata
        out[kind][md.name] = out[kind][md.name] or { at = {} }
        out[kind][md.name][ev.type] = tonumber(md.resourceVersion)
        out[kind][md.name].at[ev.type] = tonumber(stamp)
      end
    end
    if f then f:close() end
  end
  return out
end

local function stop(rec)
  for _, pid in ipairs(rec.pids) do S.sh("kill " .. pid) end
  for _, file in pairs(rec.files) do os.remove(file) end
end

local function all_there(ns, name)
  return S.get(ns, "service", name) and S.get(ns, "endpointslice", name)
    and S.get(ns, "httproute", name)
end

-- Every pod of `names` has its children, and its watches saw them (so the
-- streams are open before anything is deleted).
local function ready(ns, rec, names)
  S.eventually(function()
    for _, n in ipairs(names) do
      if not all_there(ns, n) then return false end
    end
    return true
  end, 15, "children of " .. table.concat(names, ","))
  S.eventually(function()
    local ev = events(rec)
    for _, n in ipairs(names) do
      for kind in pairs(KINDS) do
        if not (ev[kind][n] and ev[kind][n].ADDED) then return false end
      end
    end
    return true
  end, 10, "the watches saw every child")
end

-- Waits for the three DELETED events of each pod's children and asserts the
-- route's came before the Service's and, unless `slice_any` (the garbage
-- collector deletes the pod's EndpointSlice in no particular order), before
-- the EndpointSlice's; with `drain` (seconds), the Service and EndpointSlice
-- went at least that long after the route (the operator's drain delay).
local function assert_route_first(rec, names, drain, slice_any)
  local ev = S.eventually(function()
    local e = events(rec)
    for _, n in ipairs(names) do
      for kind in pairs(KINDS) do
        if not (e[kind][n] and e[kind][n].DELETED) then return false end
      end
    end
    return e
  end, 120, "every child DELETED")   -- the collector may be minutes behind after a big spec
  for _, n in ipairs(names) do
    local route = ev.HTTPRoute[n].DELETED
    print(string.format("# %s: HTTPRoute deleted at revision %d, Service %d, EndpointSlice %d",
      n, route, ev.Service[n].DELETED, ev.EndpointSlice[n].DELETED))
    assert.is_true(route < ev.Service[n].DELETED,
      n .. ": the Service was deleted before its HTTPRoute")
    if not slice_any then
      assert.is_true(route < ev.EndpointSlice[n].DELETED,
        n .. ": the EndpointSlice was deleted before its HTTPRoute")
    end
    local t = ev.HTTPRoute[n].at.DELETED
    local ds, de = ev.Service[n].at.DELETED - t, ev.EndpointSlice[n].at.DELETED - t
    print(string.format("# %s: Service deleted %.3f s after the route, EndpointSlice %.3f s",
      n, ds, de))
    if drain then
      -- The delay counts from when the operator saw the route gone, which
      -- is after the route's DELETED reached this watch, give or take the
      -- two streams' latency: 0.1 s of margin.
      assert.is_true(ds >= drain - 0.1, n .. string.format(": Service %.3f s after", ds))
      assert.is_true(de >= drain - 0.1, n .. string.format(": EndpointSlice %.3f s after", de))
    end
  end
end

-- Creates labelled pods bound to a node, with an IP and Ready.
local function pods(ns, prefix, n, net)
  local names, statuses = {}, {}
  for i = 1, n do
    names[i] = prefix .. i
    statuses[names[i]] = { ip = string.format("10.%d.0.%d", net, i), ready = true }
  end
  S.pods(ns, names, { node = "node-a" })
  S.pods_status(ns, statuses)
  return names
end

describe("a pod's HTTPRoute goes before its Service and EndpointSlice", function()
  local ns, op, rec
  local N = 4

  lazy_setup(function()
    ns = S.namespace("e2e-order")
    op = S.operator({ "--watch-namespace", ns, "--identity", "order-e2e" })
    op:wait_ready()
    rec = record(ns)
  end)
  lazy_teardown(function()
    if op then op:stop() end
    if rec then stop(rec) end
    S.cleanup(ns)
  end)

  it("the route names its Service as a blocking owner, and the Service waits for it", function()
    local names = pods(ns, "owned", 1, 80)
    ready(ns, rec, names)
    local svc = S.get(ns, "service", "owned1")
    assert.same({ "foregroundDeletion" }, svc.metadata.finalizers)
    local refs = S.get(ns, "httproute", "owned1").metadata.ownerReferences
    assert.equal(2, #refs)
    assert.equal("Pod", refs[1].kind)
    assert.is_true(refs[1].controller)
    assert.same({ apiVersion = "v1", kind = "Service", name = "owned1", uid = svc.metadata.uid,
                  controller = false, blockOwnerDeletion = true }, refs[2])
    -- The EndpointSlice has the pod alone.
    local es = S.get(ns, "endpointslice", "owned1")
    assert.equal(1, #es.metadata.ownerReferences)
    assert.equal("Pod", es.metadata.ownerReferences[1].kind)
  end)

  it("deleted with a grace period, then gone: route first", function()
    local names = pods(ns, "graceful", N, 81)
    ready(ns, rec, names)
    for _, n in ipairs(names) do
      S.must("delete pod " .. n .. " -n " .. ns .. " --grace-period=300 --wait=false")
    end
    -- Terminating: the endpoint drains, every child stays.
    S.eventually(function()
      for _, n in ipairs(names) do
        local es = S.get(ns, "endpointslice", n)
        if not (es and es.endpoints[1].conditions.terminating) then return false end
      end
      return true
    end, 10, "endpoints terminating")
    for _, n in ipairs(names) do assert.truthy(all_there(ns, n)) end
    -- Released: the Service and EndpointSlice have no owners any more (the
    -- garbage collector will delete only the route).
    S.eventually(function()
      for _, n in ipairs(names) do
        for _, kind in ipairs({ "service", "endpointslice" }) do
          local o = S.get(ns, kind, n)
          if not o or #(o.metadata.ownerReferences or {}) > 0 then return false end
        end
      end
      return true
    end, 10, "Services and EndpointSlices without owners")
    -- The kubelet (this spec) finishes: the pods are gone.
    S.must("delete pod " .. table.concat(names, " ") .. " -n " .. ns
      .. " --grace-period=0 --force --wait=false")
    assert_route_first(rec, names, 2)
  end)

  it("deleted by force: route first", function()
    local names = pods(ns, "forced", N, 82)
    ready(ns, rec, names)
    S.must("delete pod " .. table.concat(names, " ") .. " -n " .. ns
      .. " --grace-period=0 --force --wait=false")
    assert_route_first(rec, names, nil, true)
  end)

  it("the label removed (the operator deletes the children itself): route first", function()
    local names = pods(ns, "unlabelled", N, 83)
    ready(ns, rec, names)
    S.must("label pod " .. table.concat(names, " ") .. " -n " .. ns .. " envoy-router/enabled-")
    assert_route_first(rec, names, 2)
    -- The pods themselves are left alone.
    for _, n in ipairs(names) do assert.truthy(S.get(ns, "pod", n)) end
  end)

  it("deleted while no operator runs: the garbage collector keeps the order", function()
    local names = pods(ns, "orphan", N, 84)
    ready(ns, rec, names)
    S.eventually(function()
      for _, n in ipairs(names) do
        local o = S.get(ns, "httproute", n)
        if not (o and #(o.metadata.ownerReferences or {}) == 2) then return false end
      end
      return true
    end, 10, "every route names its Service")
    assert.is_true(op:stop())
    op = nil
    S.must("delete pod " .. table.concat(names, " ") .. " -n " .. ns
      .. " --grace-period=0 --force --wait=false")
    assert_route_first(rec, names, nil, true)
  end)

  it("terminating, then gone while no operator runs: a restarted one deletes the leftovers "
    .. "after the drain delay", function()
    -- (An earlier case that failed may have left its operator running.)
    if op then op:stop() end
    op = S.operator({ "--watch-namespace", ns, "--identity", "order-e2e" })
    op:wait_ready()
    local names = pods(ns, "left", 2, 85)
    ready(ns, rec, names)
    S.must("delete pod " .. table.concat(names, " ") .. " -n " .. ns
      .. " --grace-period=300 --wait=false")
    S.eventually(function()
      for _, n in ipairs(names) do
        local o = S.get(ns, "service", n)
        if not o or #(o.metadata.ownerReferences or {}) > 0 then return false end
      end
      return true
    end, 10, "Services without owners")
    assert.is_true(op:stop())
    op = nil
    S.must("delete pod " .. table.concat(names, " ") .. " -n " .. ns
      .. " --grace-period=0 --force --wait=false")
    -- The garbage collector deletes the routes only.
    S.eventually(function()
      for _, n in ipairs(names) do
        if S.get(ns, "httproute", n) then return false end
      end
      return true
    end, 30, "routes gone")
    S.sleep(1)
    for _, n in ipairs(names) do
      assert.truthy(S.get(ns, "service", n), n .. ": the Service waits for an operator")
    end
    local started = os.time()
    op = S.operator({ "--watch-namespace", ns, "--identity", "order-e2e" })
    op:wait_ready()
    assert_route_first(rec, names)
    local ev = events(rec)
    for _, n in ipairs(names) do
      -- os.time() has whole seconds: at least 1 s of the 2 s delay shows.
      assert.is_true(ev.Service[n].at.DELETED - started >= 1,
        n .. ": the leftover Service went before the drain delay")
      assert.falsy(S.get(ns, "endpointslice", n))
    end
  end)
end)
