-- End-to-end: exact convergence. Every field of every child belongs to one
-- server-side-apply field manager, envoy-router, from the moment the child
-- exists; so a field the flags or templates no longer produce is pruned by
-- the next apply, a hand edit of a field we own is repaired, and what
-- someone else added is left alone. A name someone else holds is never
-- written, not even by the apply that creates children.

local S = require("spec.e2e.support")

local PODS = { "cv-1", "cv-2", "cv-3" }

local function start(ns, extra)
  local args = { "--watch-namespace", ns }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local op = S.operator(args)
  op:wait_ready()
  return op
end

local function routes(ns)
  local out = {}
  for _, name in ipairs(PODS) do out[#out + 1] = S.get(ns, "httproute", name) end
  return out
end

local function every_route(ns, pred)
  for _, r in ipairs(routes(ns)) do
    if not (r and pred(r)) then return false end
  end
  return true
end

-- The object with its managedFields (kubectl hides them by default).
local function get_mf(ns, kind, name)
  return require("cjson").decode(S.must(string.format(
    "get %s %s -n %s -o json --show-managed-fields", kind, name, ns)))
end

local function tmpdir()
  return (S.sh("mktemp -d"):gsub("%s+$", ""))
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("children written by server-side apply only", function()
  local ns, op, dir
  lazy_setup(function()
    ns = S.namespace("e2e-converge")
    for i, name in ipairs(PODS) do
      S.pod(ns, name)
      S.pod_status(ns, name, { ip = "10.80.0." .. i, ready = true })
    end
  end)
  lazy_teardown(function()
    if op then op:stop() end
    if dir then S.sh("rm -rf " .. S.quote(dir)) end
    S.cleanup(ns)
  end)

  it("have one field manager, envoy-router with operation Apply, from the start", function()
    op = start(ns, { "--rewrite-prefix=true", "--hostname", "a.example.com" })
    S.eventually(function()
      return every_route(ns, function(r) return r.spec.rules[1].filters ~= nil end)
    end, 15, "routes with the rewrite")
    for _, name in ipairs(PODS) do
      for _, kind in ipairs({ "service", "endpointslice", "httproute" }) do
        local o = get_mf(ns, kind, name)
        local mf = o.metadata.managedFields
        assert.equal(1, #mf, kind .. " " .. name .. ": " .. require("cjson").encode(mf))
        assert.equal("envoy-router", mf[1].manager)
        assert.equal("Apply", mf[1].operation)
        assert.truthy(o.metadata.annotations["envoy-router/desired-hash"])
      end
    end
  end)

  it("turning --rewrite-prefix off prunes the rewrite on every existing route", function()
    op:stop()
    local writes_before = 0
    op = start(ns, { "--hostname", "a.example.com" })
    S.eventually(function()
      return every_route(ns, function(r) return r.spec.rules[1].filters == nil end)
    end, 15, "the rewrite pruned from every route; log " .. op.log)
    assert.truthy(every_route(ns, function(r) return r.spec.hostnames[1] == "a.example.com" end))
    -- One apply per route, nothing else: Services and EndpointSlices are
    -- as desired already.
    S.eventually(function() return op:idle() end, 10, "idle")
    assert.equal(writes_before + #PODS, op:writes())
  end)

  it("removing --hostname prunes the hostnames", function()
    op:stop()
    op = start(ns, {})
    S.eventually(function()
      return every_route(ns, function(r) return r.spec.hostnames == nil end)
    end, 15, "hostnames pruned from every route; log " .. op.log)
  end)

  it("a hand-added annotation stays while a hand edit of a field we own is repaired", function()
    S.must("annotate service cv-1 -n " .. ns .. " example.com/note=kept")
    S.must("patch service cv-1 -n " .. ns .. " --type=json -p " ..
      S.quote('[{"op":"replace","path":"/spec/ports/0/targetPort","value":9999}]'))
    S.eventually(function()
      return S.get(ns, "service", "cv-1").spec.ports[1].targetPort == 8080
    end, 10, "targetPort repaired")
    assert.equal("kept", S.get(ns, "service", "cv-1").metadata.annotations["example.com/note"])
    -- and it stays through a change of what is desired (an apply that
    -- prunes what is ours, not what is someone else's)
    op:stop()
    op = start(ns, { "--service-port", "81" })
    S.eventually(function()
      return S.get(ns, "service", "cv-1").spec.ports[1].port == 81
    end, 10, "service port 81")
    assert.equal("kept", S.get(ns, "service", "cv-1").metadata.annotations["example.com/note"])
    op:stop()
    op = start(ns, {})
    S.eventually(function()
      return S.get(ns, "service", "cv-1").spec.ports[1].port == 80
    end, 10, "service port 80 again")
  end)

  it("a custom template that drops an annotation prunes it", function()
    dir = tmpdir()
    write(dir .. "/templates.service.lua", [[
local base = require("builtin.templates.service")
return function(p, cfg, names)
  local svc = base(p, cfg, names)
  svc.metadata.annotations = { ["example.com/team"] = "data" }
  return svc
end
]])
    op:stop()
    op = start(ns, { "--scripts-dir", dir })
    S.eventually(function()
      local s = S.get(ns, "service", "cv-2")
      return s.metadata.annotations["example.com/team"] == "data"
    end, 10, "annotation written by the custom template")
    write(dir .. "/templates.service.lua", [[
return require("builtin.templates.service")
]])
    -- the scripts directory is watched: the reload re-renders every pod
    S.eventually(function()
      for _, name in ipairs(PODS) do
        if S.get(ns, "service", name).metadata.annotations["example.com/team"] ~= nil then
          return false
        end
      end
      return true
    end, 15, "annotation pruned from every Service; log " .. op.log)
    assert.equal("kept", S.get(ns, "service", "cv-1").metadata.annotations["example.com/note"])
  end)

  it("a restart with everything in place writes nothing", function()
    op:stop()
    op = start(ns, { "--scripts-dir", dir })
    S.eventually(function()
      return op:metric("controller_runtime_reconcile_total") >= #PODS and op:idle()
    end, 15, "reconciled")
    S.sleep(1)
    assert.equal(0, op:writes(), "log " .. op.log)
  end)
end)

describe("a name someone else holds", function()
  local ns, op
  lazy_setup(function()
    ns = S.namespace("e2e-converge-taken")
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(ns)
  end)

  it("is never written, not even by the apply that creates children", function()
    for _, kind in ipairs({ "Service", "EndpointSlice" }) do
      local name = kind == "Service" and "theirs-svc" or "theirs-es"
      S.pod(ns, name)
      S.pod_status(ns, name, { ip = "10.81.0." .. (kind == "Service" and 1 or 2), ready = true })
    end
    S.apply({ apiVersion = "v1", kind = "Service",
              metadata = { name = "theirs-svc", namespace = ns, labels = { owner = "user" } },
              spec = { ports = { { port = 70 } } } })
    -- theirs-es: its Service is free, so the operator creates that and then
    -- meets the user's EndpointSlice by apply.
    S.apply({ apiVersion = "discovery.k8s.io/v1", kind = "EndpointSlice",
              metadata = { name = "theirs-es", namespace = ns, labels = { owner = "user" } },
              addressType = "IPv4", endpoints = { { addresses = { "10.9.9.9" } } } })
    local svc_rv = S.get(ns, "service", "theirs-svc").metadata.resourceVersion
    local es_rv = S.get(ns, "endpointslice", "theirs-es").metadata.resourceVersion
    op = start(ns, {})
    S.eventually(function()
      return op:log_text():find("theirs-es", 1, true) and op:log_text():find("NameConflict", 1, true)
    end, 10, "conflict reported; log " .. op.log)
    S.sleep(2)
    local svc = get_mf(ns, "service", "theirs-svc")
    local es = get_mf(ns, "endpointslice", "theirs-es")
    assert.equal(svc_rv, svc.metadata.resourceVersion)
    assert.equal(es_rv, es.metadata.resourceVersion)
    assert.is_nil(svc.metadata.ownerReferences)
    assert.is_nil(es.metadata.ownerReferences)
    assert.equal("10.9.9.9", es.endpoints[1].addresses[1])
    for _, mf in ipairs(svc.metadata.managedFields) do assert.are_not.equal("envoy-router", mf.manager) end
    for _, mf in ipairs(es.metadata.managedFields) do assert.are_not.equal("envoy-router", mf.manager) end
  end)
end)

describe("a child an older envoy-router created by POST", function()
  local ns, op
  lazy_setup(function()
    ns = S.namespace("e2e-converge-upgrade")
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(ns)
  end)

  local function entries(o, operation)
    local n = 0
    for _, mf in ipairs(o.metadata.managedFields or {}) do
      if mf.manager == "envoy-router" and mf.operation == operation then n = n + 1 end
    end
    return n
  end

  it("has its Update entry handed to the Apply entry, so a field no longer desired is pruned",
    function()
    S.pod(ns, "old-1")
    S.pod_status(ns, "old-1", { ip = "10.82.0.1", ready = true })
    local pod = S.get(ns, "pod", "old-1")
    -- As envoy-router wrote children before every write was an apply: a
    -- create (POST) under its manager name, with an annotation today's
    -- template no longer produces.
    local code = S.api("POST", "/api/v1/namespaces/" .. ns .. "/services?fieldManager=envoy-router", {
      apiVersion = "v1", kind = "Service",
      metadata = { name = "old-1", namespace = ns,
        labels = { ["app.kubernetes.io/managed-by"] = "envoy-router", ["envoy-router/pod"] = "old-1" },
        annotations = { ["example.com/old"] = "x" },
        ownerReferences = { { apiVersion = "v1", kind = "Pod", name = "old-1",
          uid = pod.metadata.uid, controller = true, blockOwnerDeletion = false } } },
      spec = { clusterIP = "None",
               ports = { { name = "http", port = 80, targetPort = 8080, protocol = "TCP" } } } })
    assert.equal(201, code)
    local before = get_mf(ns, "service", "old-1")
    assert.equal(1, entries(before, "Update"))
    op = start(ns, {})
    S.eventually(function()
      local svc = get_mf(ns, "service", "old-1")
      return entries(svc, "Update") == 0 and entries(svc, "Apply") == 1
        and (svc.metadata.annotations or {})["example.com/old"] == nil
        and (svc.metadata.annotations or {})["envoy-router/desired-hash"] ~= nil
    end, 15, "the old annotation pruned; log " .. op.log)
    local svc = get_mf(ns, "service", "old-1")
    assert.equal(before.metadata.uid, svc.metadata.uid, "upgraded in place, not replaced")
    assert.equal("None", svc.spec.clusterIP)
    assert.truthy(op:log_text():find("upgrade", 1, true) or op:writes() > 0)
  end)
end)
