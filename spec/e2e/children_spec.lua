-- End-to-end: the children a labelled pod gets, field by field, as a user
-- reads them back with kubectl. One operator per describe block, limited to
-- that block's namespace.

local S = require("spec.e2e.support")

local DNS1035 = "^[a-z][a-z0-9-]*$"

local function is_dns1035(s)
  return type(s) == "string" and #s <= 63 and s:match(DNS1035) ~= nil and s:match("[a-z0-9]$") ~= nil
end

-- The three children of pod `name`, once the EndpointSlice carries `ip` and
-- the route names the Service as its second owner.
local function wait_children(ns, child, ip, timeout)
  return S.eventually(function()
    local es = S.get(ns, "endpointslice", child)
    if not (es and es.endpoints and es.endpoints[1].addresses[1] == ip) then return nil end
    local svc, rt = S.get(ns, "service", child), S.get(ns, "httproute", child)
    if not (svc and rt and #(rt.metadata.ownerReferences or {}) == 2) then return nil end
    return { svc = svc, es = es, rt = rt }
  end, timeout or 10, "children of " .. child .. " with " .. ip)
end

describe("a labelled pod with the default flags", function()
  local ns, op, pod, c
  lazy_setup(function()
    ns = S.namespace("e2e-children")
    op = S.operator({ "--watch-namespace", ns })
    op:wait_ready()
    pod = S.pod(ns, "web-1", { node = "node-a",
      labels = { ["envoy-router/enabled"] = "true", app = "notebook" } })
    S.pod_status(ns, "web-1", { ip = "10.20.0.7", ready = true })
    c = wait_children(ns, "web-1", "10.20.0.7")
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(ns)
  end)

  it("gets exactly one Service, one EndpointSlice and one HTTPRoute, named after the pod", function()
    local n, items = S.children_of(ns, "web-1")
    assert.same({ Service = 1, EndpointSlice = 1, HTTPRoute = 1 }, n)
    for _, o in ipairs(items) do assert.equal("web-1", o.metadata.name) end
    -- and nothing else in the namespace carries the operator's label
    assert.equal(3, #S.list(ns, "services,endpointslices,httproutes",
      "app.kubernetes.io/managed-by=envoy-router"))
  end)

  it("labels every child as managed by envoy-router for that pod", function()
    for _, o in ipairs({ c.svc, c.es, c.rt }) do
      assert.equal("envoy-router", o.metadata.labels["app.kubernetes.io/managed-by"], o.kind)
      assert.equal("web-1", o.metadata.labels["envoy-router/pod"], o.kind)
    end
    assert.equal("web-1", c.es.metadata.labels["kubernetes.io/service-name"])
  end)

  it("makes the pod the controller owner of every child, without blocking its deletion", function()
    for _, o in ipairs({ c.svc, c.es, c.rt }) do
      local refs = o.metadata.ownerReferences
      assert.equal(o.kind == "HTTPRoute" and 2 or 1, #refs, o.kind)
      assert.same({ apiVersion = "v1", kind = "Pod", name = "web-1", uid = pod.metadata.uid,
                    controller = true, blockOwnerDeletion = false }, refs[1])
    end
  end)

  it("makes the Service a blocking owner of the HTTPRoute, and the Service wait for it "
    .. "(the route goes first)", function()
      assert.same({ apiVersion = "v1", kind = "Service", name = "web-1",
                    uid = c.svc.metadata.uid, controller = false, blockOwnerDeletion = true },
                  c.rt.metadata.ownerReferences[2])
      assert.same({ "foregroundDeletion" }, c.svc.metadata.finalizers)
      assert.is_nil(c.es.metadata.finalizers)
      assert.is_nil(c.rt.metadata.finalizers)
    end)

  it("gives the Service no selector and port http 80 -> 8080 TCP", function()
    local spec = c.svc.spec
    assert.is_nil(spec.selector)
    assert.equal("None", spec.clusterIP)
    assert.equal(1, #spec.ports)
    local p = spec.ports[1]
    assert.same({ "http", 80, 8080, "TCP" }, { p.name, p.port, p.targetPort, p.protocol })
  end)

  it("points the EndpointSlice at the pod: IPv4 address, port http 8080 TCP, targetRef, node", function()
    local es = c.es
    assert.equal("IPv4", es.addressType)
    assert.same({ { name = "http", port = 8080, protocol = "TCP" } }, es.ports)
    assert.equal(1, #es.endpoints)
    local ep = es.endpoints[1]
    assert.same({ "10.20.0.7" }, ep.addresses)
    assert.same({ ready = true, serving = true, terminating = false }, ep.conditions)
    assert.same({ kind = "Pod", name = "web-1", namespace = ns, uid = pod.metadata.uid },
      { kind = ep.targetRef.kind, name = ep.targetRef.name, namespace = ep.targetRef.namespace,
        uid = ep.targetRef.uid })
    assert.equal("node-a", ep.nodeName)
  end)

  it("routes PathPrefix /web-1 on Gateway envoy-router to the Service on port 80", function()
    local spec = c.rt.spec
    assert.equal(1, #spec.parentRefs)
    assert.equal("envoy-router", spec.parentRefs[1].name)
    assert.equal("Gateway", spec.parentRefs[1].kind or "Gateway")
    assert.is_nil(spec.parentRefs[1].namespace)
    assert.equal(1, #spec.rules)
    assert.same({ { path = { type = "PathPrefix", value = "/web-1" } } }, spec.rules[1].matches)
    local b = spec.rules[1].backendRefs
    assert.equal(1, #b)
    assert.same({ "web-1", 80 }, { b[1].name, b[1].port })
    assert.equal("Service", b[1].kind or "Service")
  end)

  it("leaves the pod itself alone: no finalizer, labels as the user set them", function()
    local p = S.get(ns, "pod", "web-1")
    assert.is_nil(p.metadata.finalizers)
    assert.is_nil(p.metadata.ownerReferences)
    assert.same({ ["envoy-router/enabled"] = "true", app = "notebook" }, p.metadata.labels)
  end)

  it("gives a pod without an IP nothing until its status has one", function()
    S.pod(ns, "late")
    S.never(function() return S.get(ns, "service", "late") or S.get(ns, "endpointslice", "late")
      or S.get(ns, "httproute", "late") end, 1.5, "children of a pod without IP")
    S.pod_status(ns, "late", { ip = "10.20.0.8", ready = true })
    wait_children(ns, "late", "10.20.0.8", 5)
  end)

  it("follows a changed pod IP", function()
    S.pod(ns, "moving")
    S.pod_status(ns, "moving", { ip = "10.20.0.9", ready = true })
    local first = wait_children(ns, "moving", "10.20.0.9")
    S.pod_status(ns, "moving", { ip = "10.20.0.10", ready = true })
    local again = wait_children(ns, "moving", "10.20.0.10", 5)
    assert.equal(first.es.metadata.uid, again.es.metadata.uid)   -- updated, not recreated
  end)

  it("ignores a pod without the label", function()
    S.pod(ns, "plain", { labels = { app = "plain" } })
    S.pod_status(ns, "plain", { ip = "10.20.0.11", ready = true })
    S.never(function() return S.get(ns, "service", "plain") or S.get(ns, "endpointslice", "plain")
      or S.get(ns, "httproute", "plain") end, 1.5, "children of an unlabelled pod")
  end)

  it("gives an IPv6 pod an IPv6 EndpointSlice", function()
    S.pod(ns, "six")
    S.pod_status(ns, "six", { ip = "fd00:10:20::6", ready = true })
    local got = wait_children(ns, "six", "fd00:10:20::6")
    assert.equal("IPv6", got.es.addressType)
    assert.same({ "fd00:10:20::6" }, got.es.endpoints[1].addresses)
  end)
end)

describe("pod names that are not DNS-1035 labels", function()
  local ns, op
  local long = "user-" .. string.rep("abcdefghij", 10) .. "-notebook"   -- 114 chars
  local cases = {
    { pod = "web.v2.notebook", why = "dots" },
    { pod = "1st-panel", why = "a leading digit" },
    { pod = long, why = #long .. " characters" },
  }
  lazy_setup(function()
    ns = S.namespace("e2e-names")
    op = S.operator({ "--watch-namespace", ns })
    op:wait_ready()
    for i, case in ipairs(cases) do
      S.pod(ns, case.pod)
      S.pod_status(ns, case.pod, { ip = "10.21.0." .. i, ready = true })
    end
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(ns)
  end)

  for i, case in ipairs(cases) do
    it("gives a pod whose name has " .. case.why .. " valid hashed children and path /<pod>", function()
      local items = S.eventually(function()
        -- found by owner: a pod name too long for a label value is not the label
        local all = S.list(ns, "services,endpointslices,httproutes",
          "app.kubernetes.io/managed-by=envoy-router")
        local mine = {}
        for _, o in ipairs(all) do
          if o.metadata.ownerReferences[1].name == case.pod then mine[#mine + 1] = o end
        end
        return #mine == 3 and mine
      end, 10, "three children for " .. case.pod)
      local byk = {}
      for _, o in ipairs(items) do byk[o.kind] = o end
      local name = byk.Service.metadata.name
      assert.is_true(is_dns1035(name), "Service name " .. name)
      assert.are_not.equal(case.pod, name)
      assert.truthy(name:match("%-%x+$"), "hash suffix in " .. name)
      assert.equal(name, byk.EndpointSlice.metadata.name)
      assert.equal(name, byk.HTTPRoute.metadata.name)
      assert.equal(name, byk.EndpointSlice.metadata.labels["kubernetes.io/service-name"])
      assert.equal("/" .. case.pod, byk.HTTPRoute.spec.rules[1].matches[1].path.value)
      assert.equal(name, byk.HTTPRoute.spec.rules[1].backendRefs[1].name)
      assert.equal(case.pod, byk.EndpointSlice.endpoints[1].targetRef.name)
      assert.same({ "10.21.0." .. i }, byk.EndpointSlice.endpoints[1].addresses)
      local label = byk.Service.metadata.labels["envoy-router/pod"]
      assert.truthy(#label <= 63 and label:match("^%w[%w._-]*$") and label:match("%w$"),
        "label value " .. label)
      if #case.pod <= 63 then assert.equal(case.pod, label) end
    end)
  end

  it("gives the three pods three distinct child names", function()
    local names = {}
    for _, s in ipairs(S.list(ns, "services", "app.kubernetes.io/managed-by=envoy-router")) do
      names[s.metadata.name] = true
    end
    local n = 0
    for _ in pairs(names) do n = n + 1 end
    assert.equal(3, n)
  end)
end)

describe("flags --gateway-name, --service-port and --pod-port", function()
  local ns, op
  lazy_setup(function()
    ns = S.namespace("e2e-flags")
    op = S.operator({ "--watch-namespace", ns, "--gateway-name", "edge-gw",
                      "--service-port", "8000", "--pod-port", "9090" })
    op:wait_ready()
    S.pod(ns, "app-1")
    S.pod_status(ns, "app-1", { ip = "10.22.0.1", ready = true })
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(ns)
  end)

  it("reach the Service, the EndpointSlice and the HTTPRoute", function()
    local c = wait_children(ns, "app-1", "10.22.0.1")
    local sp = c.svc.spec.ports[1]
    assert.same({ "http", 8000, 9090 }, { sp.name, sp.port, sp.targetPort })
    assert.same({ { name = "http", port = 9090, protocol = "TCP" } }, c.es.ports)
    assert.equal("edge-gw", c.rt.spec.parentRefs[1].name)
    assert.equal(8000, c.rt.spec.rules[1].backendRefs[1].port)
    assert.equal("/app-1", c.rt.spec.rules[1].matches[1].path.value)
  end)
end)
