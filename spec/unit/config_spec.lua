local config = require("lib.config")
local helper = require("spec.helper")

describe("lib.config.normalize", function()
  it("fills every default when given nothing", function()
    local want = {
      gatewayName = "envoy-router",
      servicePort = 80,
      podPort = 8080,
      hostnames = {},
      rewritePrefix = false,
      headless = true,
      extra = {},
    }
    assert.same(want, config.normalize(nil))
    assert.same(want, config.normalize({}))
    assert.same(want, config.normalize(helper.default_config))
  end)

  it("keeps given values and turns float ports into integers", function()
    local cfg = config.normalize({
      gatewayName = "public", gatewayNamespace = "gateways",
      servicePort = 8000.0, podPort = 9090.0,
      hostnames = { "a.example.com" }, rewritePrefix = true, headless = false,
      extra = { team = "data" },
    })
    assert.same({
      gatewayName = "public", gatewayNamespace = "gateways",
      servicePort = 8000, podPort = 9090,
      hostnames = { "a.example.com" }, rewritePrefix = true, headless = false,
      extra = { team = "data" },
    }, cfg)
    assert.equal("integer", math.type(cfg.servicePort))
    assert.equal("integer", math.type(cfg.podPort))
  end)

  it("treats an empty gateway name or namespace as unset", function()
    local cfg = config.normalize({ gatewayName = "", gatewayNamespace = "" })
    assert.equal("envoy-router", cfg.gatewayName)
    assert.is_nil(cfg.gatewayNamespace)
  end)

  it("copies tables so callers cannot change each other's config", function()
    local hosts = { "a.example.com" }
    local cfg = config.normalize({ hostnames = hosts })
    hosts[2] = "b.example.com"
    assert.same({ "a.example.com" }, cfg.hostnames)
  end)

  it("raises on values of the wrong type or range", function()
    local bad = {
      { servicePort = 0 }, { servicePort = 65536 }, { podPort = 80.5 },
      { podPort = "8080" }, { headless = "true" }, { rewritePrefix = 1 },
      { gatewayName = 3 }, { gatewayNamespace = true }, { hostnames = "a" },
      { hostnames = { "" } }, { hostnames = { 1 } }, { extra = { a = 1 } },
    }
    for _, cfg in ipairs(bad) do
      assert.has_error(function() config.normalize(cfg) end)
    end
    assert.has_error(function() config.normalize("x") end)
  end)
end)

describe("config seen in the rendered children", function()
  local function render(overrides)
    local objects = assert(helper.render("plain", overrides))
    return helper.find(objects, "Service"), helper.find(objects, "EndpointSlice"),
      helper.find(objects, "HTTPRoute")
  end

  it("gatewayName names the parent Gateway", function()
    local _, _, route = render({ gatewayName = "public" })
    assert.same({ { group = "gateway.networking.k8s.io", kind = "Gateway", name = "public" } },
      route.spec.parentRefs)
  end)

  it("gatewayNamespace adds the parent's namespace", function()
    local _, _, route = render({ gatewayNamespace = "gateways" })
    assert.same({ {
      group = "gateway.networking.k8s.io", kind = "Gateway",
      name = "envoy-router", namespace = "gateways",
    } }, route.spec.parentRefs)
  end)

  it("servicePort sets the Service port and the route's backend port", function()
    local service, slice, route = render({ servicePort = 8000 })
    assert.equal(8000, service.spec.ports[1].port)
    assert.equal(8080, service.spec.ports[1].targetPort)
    assert.equal(8000, route.spec.rules[1].backendRefs[1].port)
    assert.equal(8080, slice.ports[1].port)
  end)

  it("podPort sets the target port and the EndpointSlice port", function()
    local service, slice, route = render({ podPort = 9090 })
    assert.equal(9090, service.spec.ports[1].targetPort)
    assert.equal(9090, slice.ports[1].port)
    assert.equal(80, service.spec.ports[1].port)
    assert.equal(80, route.spec.rules[1].backendRefs[1].port)
  end)

  it("hostnames are copied onto the route, and left out when empty", function()
    local _, _, route = render({ hostnames = { "apps.example.com", "apps.example.org" } })
    assert.same({ "apps.example.com", "apps.example.org" }, route.spec.hostnames)
    _, _, route = render({ hostnames = {} })
    assert.is_nil(route.spec.hostnames)
  end)

  it("rewritePrefix adds the URLRewrite filter, and nothing otherwise", function()
    local _, _, route = render({ rewritePrefix = true })
    assert.same({ {
      type = "URLRewrite",
      urlRewrite = { path = { type = "ReplacePrefixMatch", replacePrefixMatch = "/" } },
    } }, route.spec.rules[1].filters)
    _, _, route = render({ rewritePrefix = false })
    assert.is_nil(route.spec.rules[1].filters)
  end)

  it("headless false leaves clusterIP to the API server", function()
    local service = render({ headless = false })
    assert.is_nil(service.spec.clusterIP)
    service = render({ headless = true })
    assert.equal("None", service.spec.clusterIP)
  end)

  it("an empty config gives the defaults", function()
    local objects = assert(require("router").children(helper.pod("plain"), {}))
    helper.assert_golden("plain", objects)
    objects = assert(require("router").children(helper.pod("plain"), nil))
    helper.assert_golden("plain", objects)
  end)

  it("every option at once", function()
    local objects = assert(helper.render("plain", {
      gatewayName = "public", gatewayNamespace = "gateways",
      servicePort = 8000, podPort = 9090,
      hostnames = { "apps.example.com", "apps.example.org" },
      rewritePrefix = true, headless = false,
    }))
    helper.assert_golden("plain-all-options", objects)
  end)
end)
