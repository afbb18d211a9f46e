-- Several installs and Gateways as users make them, seen by a client:
-- two installs of the chart in two namespaces (the default values and
-- values-secondary.yaml) each with their own Envoy proxy, and a route to a
-- Gateway that does not exist yet.
--
-- Every Gateway here has its own listener port: all proxies share this
-- machine's network namespace (Envoy listens on the port + 10000).

local D = require("spec.dataplane.support")
local S = D.S

describe("two installs in two namespaces", function()
  local a, b = "dp-install-a", "dp-install-b"
  local gw_a, gw_b, op_a, op_b, pods

  lazy_setup(function()
    D.up()
    S.namespace(a)
    S.namespace(b)
    gw_a = D.gateway("envoy-router", a, { "--set", "gateway.port=82" })
    gw_b = D.gateway("envoy-router", b, { "-f", "charts/envoy-router/values-secondary.yaml",
                                          "--set", "gateway.port=83" })
    op_a = D.operator(a, gw_a)
    op_b = D.operator(b, gw_b)
    pods = D.pods({ ["pod-a"] = "10.244.9.1", ["pod-b"] = "10.244.9.2" })
  end)

  lazy_teardown(function()
    if op_a then op_a:stop() end
    if op_b then op_b:stop() end
    if pods then pods:stop() end
    S.cleanup(a)
    S.cleanup(b)
  end)

  it("each namespace's pods answer on their own Gateway's proxy only", function()
    assert.are_not.equal(gw_a.port, gw_b.port)
    S.pod(a, "pod-a")
    S.pod_status(a, "pod-a", { ip = "10.244.9.1", ready = true })
    S.pod(b, "pod-b")
    S.pod_status(b, "pod-b", { ip = "10.244.9.2", ready = true })
    D.wait_answer(gw_a.port, "/pod-a/", 200, "pod-a", 30)
    D.wait_answer(gw_b.port, "/pod-b/", 200, "pod-b", 30)
    assert.are.equal(404, (D.get(gw_a.port, "/pod-b/")))
    assert.are.equal(404, (D.get(gw_b.port, "/pod-a/")))
    -- The secondary install rendered no GatewayClass of its own: both
    -- Gateways use the first install's.
    assert.are.equal(S.get(a, "gateway", gw_a.name).spec.gatewayClassName,
      S.get(b, "gateway", gw_b.name).spec.gatewayClassName)
  end)
end)

describe("a route to a Gateway that does not exist", function()
  local ns = "dp-nogateway"
  local op, pods

  lazy_setup(function()
    D.up()
    S.namespace(ns)
    pods = D.pods({ ["lost-1"] = "10.244.9.3" })
  end)

  lazy_teardown(function()
    if op then op:stop() end
    if pods then pods:stop() end
    S.cleanup(ns)
  end)

  it("gets a Warning Event and shows in the gauge; "
    .. "works within seconds once the Gateway is created",
  function()
    local name = "late-gateway"
    op = D.operator(ns, { name = name })
    S.pod(ns, "lost-1")
    S.pod_status(ns, "lost-1", { ip = "10.244.9.3", ready = true })
    S.eventually(function() return S.get(ns, "httproute", "lost-1") end, 10, "route written")
    local ev = S.eventually(function()
      for _, e in ipairs(S.list(ns, "events")) do
        if e.type == "Warning" and e.involvedObject.kind == "Pod"
          and e.involvedObject.name == "lost-1" then
          return e
        end
      end
    end, 60, "Warning Event on pod lost-1") -- Envoy Gateway writes nothing on such a route:
    -- the operator reports a route nobody answers for 30 s
    assert.is_truthy(ev.message:find(name, 1, true) or ev.message:lower():find("gateway", 1, true),
      "the Event says which Gateway: " .. ev.message)
    S.eventually(function()
      local accepted = op:metric("envoy_router_routes", { state = "accepted" })
      return accepted == 0 and op:metric("envoy_router_routes") - accepted >= 1
    end, 10, "envoy_router_routes counts the route as not accepted")

    local t0 = S.now()
    local gw = D.gateway("envoy-router", ns, { "--set", "gateway.name=" .. name,
      "--set", "gateway.port=84", "--set", "gateway.createClass=false" })
    D.wait_answer(gw.port, "/lost-1/", 200, "lost-1", 30)
    local took = S.now() - t0
    assert.is_truthy(took < 30, "answered " .. took .. " s after the Gateway was created")
    S.eventually(function()
      return op:metric("envoy_router_routes", { state = "accepted" }) == 1
    end, 15, "envoy_router_routes counts it as accepted")
  end)
end)
