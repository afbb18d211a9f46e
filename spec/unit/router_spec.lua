local helper = require("spec.helper")
local names = require("lib.names")
local router = require("router")

-- Pod fixtures that get children, each with its golden file of the same name.
local WITH_CHILDREN = {
  "plain", "not-ready", "terminating", "ipv6", "podips-only", "long-name",
  "digit-start", "dotted", "labels-annotations",
}

-- Pod fixtures that get none, with the reason.
local WITHOUT_CHILDREN = {
  ["no-ip"] = "pod has no IP yet",
  ["no-status"] = "pod has no IP yet",
  ["finished"] = "pod has finished (phase Succeeded)",
}

describe("router", function()
  it("selects pods labelled envoy-router/enabled=true", function()
    assert.equal("envoy-router/enabled=true", router.selector)
  end)

  it("runs the three default templates in order", function()
    assert.same({
      require("templates.service"),
      require("templates.endpointslice"),
      require("templates.httproute"),
    }, router.templates)
  end)

  it("has a case for every pod fixture", function()
    local covered = {}
    for _, name in ipairs(WITH_CHILDREN) do
      covered[#covered + 1] = name
    end
    for name in pairs(WITHOUT_CHILDREN) do
      covered[#covered + 1] = name
    end
    table.sort(covered)
    assert.same(helper.pod_names(), covered)
  end)
end)

describe("router.children against golden files", function()
  for _, name in ipairs(WITH_CHILDREN) do
    it("renders " .. name, function()
      local objects, why = helper.render(name)
      assert.is_nil(why)
      helper.assert_golden(name, objects)
    end)
  end

  for name, reason in pairs(WITHOUT_CHILDREN) do
    it("gives no children to " .. name, function()
      local objects, why = helper.render(name)
      assert.is_nil(objects)
      assert.equal(reason, why)
    end)
  end
end)

describe("router.children output", function()
  local configs = {
    {},
    { rewritePrefix = true, hostnames = { "apps.example.com" }, gatewayNamespace = "gw" },
    { headless = false, servicePort = 443.0, podPort = 3000.0 },
  }

  local function each_rendering(fn)
    for _, name in ipairs(WITH_CHILDREN) do
      for _, overrides in ipairs(configs) do
        fn(name, assert(helper.render(name, overrides)))
      end
    end
  end

  it("has no empty table, sparse array or mixed table anywhere", function()
    each_rendering(function(name, objects)
      assert.is_nil(helper.json_problem(objects), name)
    end)
  end)

  it("has Service, EndpointSlice and HTTPRoute sharing one valid name", function()
    each_rendering(function(name, objects)
      assert.equal(3, #objects)
      local want = names.child(helper.pod(name).metadata.name)
      assert.is_true(names.is_dns1035(want))
      for i, kind in ipairs({ "Service", "EndpointSlice", "HTTPRoute" }) do
        assert.equal(kind, objects[i].kind)
        assert.equal(want, objects[i].metadata.name, name)
      end
    end)
  end)

  it("puts every child in the pod's namespace and sets no ownerReferences", function()
    each_rendering(function(name, objects)
      for _, obj in ipairs(objects) do
        assert.equal(helper.pod(name).metadata.namespace, obj.metadata.namespace)
        assert.is_nil(obj.metadata.ownerReferences)
        assert.is_nil(obj.metadata.finalizers)
      end
    end)
  end)

  it("routes the real pod name while naming children validly", function()
    local objects = assert(helper.render("dotted"))
    local route = helper.find(objects, "HTTPRoute")
    assert.equal("/web.v2.alice", route.spec.rules[1].matches[1].path.value)
    assert.equal("web-v2-alice-" .. names.hash_hex("web.v2.alice"), route.metadata.name)
    assert.equal(route.metadata.name, route.spec.rules[1].backendRefs[1].name)
  end)

  it("keeps the Service and EndpointSlice ports paired by name and protocol", function()
    each_rendering(function(_, objects)
      local sp = helper.find(objects, "Service").spec.ports[1]
      local ep = helper.find(objects, "EndpointSlice").ports[1]
      assert.equal(sp.name, ep.name)
      assert.equal(sp.protocol, ep.protocol)
      assert.equal(sp.targetPort, ep.port)
    end)
  end)

  it("emits integer ports even when the config holds floats", function()
    local objects = assert(helper.render("plain", { servicePort = 443.0, podPort = 3000.0 }))
    assert.equal("integer", math.type(helper.find(objects, "Service").spec.ports[1].port))
    assert.equal("integer", math.type(helper.find(objects, "EndpointSlice").ports[1].port))
  end)

  it("does not copy the pod's labels or annotations", function()
    local objects = assert(helper.render("labels-annotations"))
    for _, obj in ipairs(objects) do
      assert.is_nil(obj.metadata.annotations)
      if obj.kind ~= "EndpointSlice" then
        assert.is_nil(obj.metadata.labels)
      end
    end
  end)

  it("is pure: the same pod and config give the same objects, pod untouched", function()
    for _, name in ipairs(WITH_CHILDREN) do
      local pod = helper.pod(name)
      local before = helper.encode(pod)
      local first = helper.encode(assert(router.children(pod, helper.config())))
      local second = helper.encode(assert(router.children(pod, helper.config())))
      assert.equal(first, second)
      assert.equal(before, helper.encode(pod))
    end
  end)

  it("leaves the caller's config untouched", function()
    local cfg = helper.config({ hostnames = { "a.example.com" } })
    local before = helper.plain(cfg)
    local objects = assert(router.children(helper.pod("plain"), cfg))
    helper.find(objects, "HTTPRoute").spec.hostnames[1] = "changed"
    assert.same(before, helper.plain(cfg))
  end)
end)

describe("router.children edge cases", function()
  it("returns nil and a reason for a pod without a name", function()
    local pod = helper.pod("plain")
    pod.metadata.name = nil
    local objects, why = router.children(pod, helper.config())
    assert.is_nil(objects)
    assert.equal("pod has no metadata.name", why)
  end)

  it("treats a Failed pod like a finished one", function()
    local pod = helper.pod("plain")
    pod.status.phase = "Failed"
    assert.same({ nil, "pod has finished (phase Failed)" },
      { router.children(pod, helper.config()) })
  end)

  it("omits nodeName and targetRef fields the pod lacks", function()
    local pod = helper.pod("plain")
    pod.spec = nil
    pod.metadata.uid = nil
    local slice = helper.find(assert(router.children(pod, helper.config())), "EndpointSlice")
    assert.is_nil(slice.endpoints[1].nodeName)
    assert.same({ kind = "Pod", name = "notebook-alice", namespace = "users" },
      slice.endpoints[1].targetRef)
  end)

  it("raises on a config of the wrong type", function()
    assert.has_error(function()
      router.children(helper.pod("plain"), { servicePort = "eighty" })
    end)
  end)
end)
