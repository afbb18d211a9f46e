-- End-to-end: the host's invariants on script output, live. Whoever edits
-- the scripts cannot make the public Gateway reach more than the pod: a
-- script that asks for a LoadBalancer Service, an endpoint at another
-- address or a route on another Gateway gets a ScriptError Event on the
-- pod, the error is counted, and the pod's existing children stay as they
-- were (nothing is written for it).
local S = require("spec.e2e.support")

local function events_of(ns, pod, reason)
  local out = {}
  for _, e in ipairs(S.list(ns, "events")) do
    if e.involvedObject.name == pod and e.reason == reason then out[#out + 1] = e end
  end
  return out
end

-- Wraps the built-in router; a pod labelled evil=<what> gets its default
-- children edited to break one invariant.
local ROUTER = [[
local base = require("builtin.router")
return {
  selector = base.selector,
  children = function(pod, config)
    local list, why = base.children(pod, config)
    if not list then return list, why end
    local evil = (pod.metadata.labels or {}).evil
    for _, c in ipairs(list) do
      if evil == "lb" and c.kind == "Service" then
        c.spec.type = "LoadBalancer"
        c.spec.clusterIP = nil
      elseif evil == "metadata-ip" and c.kind == "EndpointSlice" then
        c.endpoints[1].addresses = { "169.254.169.254" }
      elseif evil == "gateway" and c.kind == "HTTPRoute" then
        c.spec.parentRefs[1].name = "internal-admin"
      end
    end
    return list
  end,
}
]]

describe("the host's invariants on script output", function()
  local ns, dir, op

  lazy_setup(function()
    ns = S.namespace("e2e-invariants")
    dir = (S.sh("mktemp -d"):gsub("%s+$", ""))
    local f = assert(io.open(dir .. "/router.lua", "w"))
    f:write(ROUTER)
    f:close()
    op = S.operator({ "--watch-namespace", ns, "--scripts-dir", dir })
    op:wait_ready()
  end)

  lazy_teardown(function()
    if op then op:stop() end
    if dir then S.sh("rm -rf " .. S.quote(dir)) end
    if ns then S.cleanup(ns) end
  end)

  local cases = {
    { "lb", "type LoadBalancer" },
    { "metadata-ip", "169.254.169.254, which is not an IP of pod" },
    { "gateway", "routes attach only to Gateway" },
  }
  for i, case in ipairs(cases) do
    it("refuses " .. case[1] .. " output: a ScriptError Event, nothing written", function()
      local pod = "evil-" .. case[1]
      local errors = op:metric("envoy_router_script_errors_total")
      S.pod(ns, pod, { labels = { ["envoy-router/enabled"] = "true", evil = case[1] } })
      S.pod_status(ns, pod, { ip = "10.71.0." .. i, ready = true })
      local e = S.eventually(function() return events_of(ns, pod, "ScriptError")[1] end, 15,
        "a ScriptError Event for " .. pod)
      assert.equal("Warning", e.type)
      assert.truthy(e.message:find(case[2], 1, true), e.message)
      assert.is_true(op:metric("envoy_router_script_errors_total") > errors)
      assert.same({}, S.children_of(ns, pod))
    end)
  end

  it("leaves a pod's existing children untouched when its output turns bad", function()
    S.pod(ns, "good")
    S.pod_status(ns, "good", { ip = "10.71.1.1", ready = true })
    S.eventually(function()
      local n = S.children_of(ns, "good")
      return n.Service == 1 and n.EndpointSlice == 1 and n.HTTPRoute == 1
    end, 10, "children of good")
    local before = S.get(ns, "service", "good")
    S.must("label pod good -n " .. ns .. " evil=lb")
    S.eventually(function() return events_of(ns, "good", "ScriptError")[1] end, 15,
      "a ScriptError Event for good")
    local after = S.get(ns, "service", "good")
    assert.equal(before.metadata.resourceVersion, after.metadata.resourceVersion)
    assert.are_not.equal("LoadBalancer", after.spec.type)
    assert.same({ Service = 1, EndpointSlice = 1, HTTPRoute = 1 }, S.children_of(ns, "good"))
  end)
end)
