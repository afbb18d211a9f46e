local children = require("lib.children")
local config = require("lib.config")
local helper = require("spec.helper")
local names = require("lib.names")

local service = require("templates.service")
local endpointslice = require("templates.endpointslice")
local httproute = require("templates.httproute")

local POD = {
  metadata = { name = "app-1", namespace = "team-a", uid = "u-1" },
  spec = { nodeName = "n1" },
  status = { podIP = "10.1.2.3", conditions = { { type = "Ready", status = "True" } } },
}

describe("templates called on their own", function()
  local cfg = config.normalize({ servicePort = 81, podPort = 9000 })
  local n = names.for_pod(POD)

  it("service builds a selector-less Service", function()
    assert.same({
      apiVersion = "v1", kind = "Service",
      metadata = { name = "app-1", namespace = "team-a" },
      spec = {
        clusterIP = "None",
        ports = { { name = "http", protocol = "TCP", port = 81, targetPort = 9000 } },
      },
    }, service(POD, cfg, n))
  end)

  it("endpointslice builds one endpoint for the pod", function()
    assert.same({
      apiVersion = "discovery.k8s.io/v1", kind = "EndpointSlice",
      metadata = {
        name = "app-1", namespace = "team-a",
        labels = {
          ["kubernetes.io/service-name"] = "app-1",
          ["endpointslice.kubernetes.io/managed-by"] = "envoy-router",
        },
      },
      addressType = "IPv4",
      ports = { { name = "http", protocol = "TCP", port = 9000 } },
      endpoints = { {
        addresses = { "10.1.2.3" },
        conditions = { ready = true, serving = true, terminating = false },
        targetRef = { kind = "Pod", name = "app-1", namespace = "team-a", uid = "u-1" },
        nodeName = "n1",
      } },
    }, endpointslice(POD, cfg, n))
  end)

  it("endpointslice raises for a pod without an IP", function()
    assert.has_error(function()
      local ipless = { metadata = { name = "x" } }
      endpointslice(ipless, cfg, names.for_pod(ipless))
    end, "templates.endpointslice: pod has no IP")
  end)

  it("httproute builds the PathPrefix route to the Service", function()
    assert.same({
      apiVersion = "gateway.networking.k8s.io/v1", kind = "HTTPRoute",
      metadata = { name = "app-1", namespace = "team-a" },
      spec = {
        parentRefs = { {
          group = "gateway.networking.k8s.io", kind = "Gateway", name = "envoy-router",
        } },
        rules = { {
          matches = { { path = { type = "PathPrefix", value = "/app-1" } } },
          backendRefs = { { group = "", kind = "Service", name = "app-1", port = 81, weight = 1 } },
        } },
      },
    }, httproute(POD, cfg, n))
  end)

  it("follow a renamed Service and port through the names table", function()
    local renamed = { service = "svc", endpointslice = "eps", httproute = "rt",
                      port = "web", path = "/custom" }
    assert.equal("web", service(POD, cfg, renamed).spec.ports[1].name)
    local slice = endpointslice(POD, cfg, renamed)
    assert.equal("eps", slice.metadata.name)
    assert.equal("svc", slice.metadata.labels["kubernetes.io/service-name"])
    assert.equal("web", slice.ports[1].name)
    local route = httproute(POD, cfg, renamed)
    assert.equal("rt", route.metadata.name)
    assert.equal("svc", route.spec.rules[1].backendRefs[1].name)
    assert.equal("/custom", route.spec.rules[1].matches[1].path.value)
  end)
end)

describe("lib.children.build with other templates", function()
  it("lets a template wrap a default one", function()
    local function annotated(pod, cfg, n)
      local obj = service(pod, cfg, n)
      obj.metadata.annotations = { ["example.com/team"] = cfg.extra.team }
      return obj
    end
    local objects = assert(children.build(helper.pod("plain"),
      helper.config({ extra = { team = "data" } }), { annotated, endpointslice, httproute }))
    assert.equal(3, #objects)
    assert.same({ ["example.com/team"] = "data" }, objects[1].metadata.annotations)
    assert.same(helper.golden("plain")[2], helper.plain(objects[2]))
    assert.same(helper.golden("plain")[3], helper.plain(objects[3]))
  end)

  it("skips a template that returns nil", function()
    local function none() return nil end
    local objects = assert(children.build(helper.pod("plain"), {}, { none, httproute }))
    assert.equal(1, #objects)
    assert.equal("HTTPRoute", objects[1].kind)
  end)

  it("returns nil and a reason rather than an empty list", function()
    local function none() return nil end
    assert.same({ nil, "no template produced an object" },
      { children.build(helper.pod("plain"), {}, { none }) })
  end)

  it("raises when a template returns something that is not an object", function()
    local cases = {
      { function() return "x" end, "template 1 returned a string, want an object table" },
      { function() return { kind = "Service", metadata = { name = "a" } } end,
        "template 1: object has no apiVersion" },
      { function() return { apiVersion = "v1", metadata = { name = "a" } } end,
        "template 1: object has no kind" },
      { function() return { apiVersion = "v1", kind = "Service", metadata = {} } end,
        "template 1: Service has no metadata.name" },
      { function()
          return { apiVersion = "v1", kind = "Service",
                   metadata = { name = "a", ownerReferences = { { kind = "Pod" } } } }
        end, "template 1: Service sets ownerReferences or finalizers; the host owns those" },
      { function()
          return { apiVersion = "v1", kind = "Service",
                   metadata = { name = "a", finalizers = { "x" } } }
        end, "template 1: Service sets ownerReferences or finalizers; the host owns those" },
    }
    for _, case in ipairs(cases) do
      assert.has_error(function()
        children.build(helper.pod("plain"), {}, { case[1] })
      end, case[2])
    end
  end)

  it("passes templates a normalized config", function()
    local seen
    local function spy(_, cfg)
      seen = cfg
      return nil
    end
    children.build(helper.pod("plain"), { podPort = 9000.0 }, { spy })
    assert.equal("integer", math.type(seen.podPort))
    assert.equal(80, seen.servicePort)
    assert.same({}, seen.hostnames)
  end)
end)
