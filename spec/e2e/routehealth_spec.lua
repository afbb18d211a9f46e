-- End-to-end: what the Gateway controller says about each HTTPRoute reaches
-- the user. No Gateway controller runs against this control plane, so the
-- spec writes the route's status through the status subresource as Envoy
-- Gateway would (as other specs set pod status as a kubelet would).
--
-- A route that is not accepted gets one Warning Event on its pod, with the
-- controller's reason and message, not one per status write; a route no
-- controller answers (Envoy Gateway writes nothing on a route whose Gateway
-- does not exist) gets one after 30 s;
-- envoy_router_routes{state} counts routes by state, from the cache, so it
-- is the same after a restart.

local cjson = require("cjson")
local S = require("spec.e2e.support")

local CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
local INSTANCE = "routehealth-e2e"

-- Writes the route's status.parents as the Gateway controller does: one
-- entry for the route's Gateway, with Accepted and ResolvedRefs.
local function route_status(ns, name, accepted, reason, message)
  local route = assert(S.get(ns, "httproute", name))
  local gen = route.metadata.generation
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local status = { parents = { {
    parentRef = { group = "gateway.networking.k8s.io", kind = "Gateway",
                  name = route.spec.parentRefs[1].name },
    controllerName = CONTROLLER,
    conditions = {
      { type = "Accepted", status = accepted, reason = reason, message = message,
        observedGeneration = gen, lastTransitionTime = now },
      { type = "ResolvedRefs", status = "True", reason = "ResolvedRefs",
        message = "Resolved all the Object references for the Route",
        observedGeneration = gen, lastTransitionTime = now },
    },
  } } }
  S.must(string.format("patch httproute %s -n %s --subresource=status --type=merge -p %s",
    S.quote(name), ns, S.quote(cjson.encode({ status = status }))))
end

local function events_of(ns, pod, reason)
  local out = {}
  for _, e in ipairs(S.list(ns, "events")) do
    if e.involvedObject.name == pod and e.reason == reason and e.reportingInstance == INSTANCE then
      out[#out + 1] = e
    end
  end
  return out
end

local function gauge(op, want)
  S.eventually(function()
    local m = op:metrics()
    for state, n in pairs(want) do
      if m['envoy_router_routes{state="' .. state .. '"}'] ~= n then return false end
    end
    return true
  end, 10, "envoy_router_routes = " .. cjson.encode(want))
end

describe("route health", function()
  local ns, op
  local function start()
    op = S.operator({ "--watch-namespace", ns, "--identity", INSTANCE, "--gateway-name", "gw" })
    op:wait_ready()
  end

  lazy_setup(function()
    ns = S.namespace("e2e-routehealth")
    start()
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(ns)
  end)

  local silent_since
  it("a new route is pending until a Gateway controller answers", function()
    -- p2's route never gets an answer.
    S.pods(ns, { "p1", "p2" })
    S.pods_status(ns, { p1 = { ip = "10.90.0.1", ready = true },
                        p2 = { ip = "10.90.0.2", ready = true } })
    S.eventually(function() return S.get(ns, "httproute", "p1") and S.get(ns, "httproute", "p2") end,
      10, "the routes")
    silent_since = S.now()
    gauge(op, { pending = 2, accepted = 0, not_accepted = 0, unresolved = 0 })
    assert.same({}, events_of(ns, "p1", "RouteNotAccepted"))
  end)

  it("Accepted=False: one Warning Event with the controller's reason, the gauge counts it",
    function()
      local pod = S.get(ns, "pod", "p1")
      route_status(ns, "p1", "False", "NoMatchingParent", "Parent gateway not found.")
      local e = S.eventually(function() return events_of(ns, "p1", "RouteNotAccepted")[1] end, 10,
        "a RouteNotAccepted Event")
      assert.equal("Warning", e.type)
      assert.equal(pod.metadata.uid, e.involvedObject.uid)
      assert.truthy(e.message:find("HTTPRoute " .. ns .. "/p1", 1, true), e.message)
      assert.truthy(e.message:find("Gateway " .. ns .. "/gw", 1, true), e.message)
      assert.truthy(e.message:find(CONTROLLER, 1, true), e.message)
      assert.truthy(e.message:find("NoMatchingParent: Parent gateway not found.", 1, true),
        e.message)
      gauge(op, { pending = 1, accepted = 0, not_accepted = 1 })

      -- The controller writes the same answer again (as it does on every
      -- resync): no new Event, the count stays.
      for _ = 1, 3 do
        S.sleep(0.3)
        route_status(ns, "p1", "False", "NoMatchingParent", "Parent gateway not found.")
      end
      S.sleep(2)
      local list = events_of(ns, "p1", "RouteNotAccepted")
      assert.equal(1, #list)
      assert.equal(1, list[1].count)
      -- The route is not retried for it: no reconcile errors.
      assert.equal(0, op:metric("controller_runtime_reconcile_errors_total"))
    end)

  it("Accepted=True: the gauge moves, nothing is reported", function()
    route_status(ns, "p1", "True", "Accepted", "Route is accepted")
    gauge(op, { pending = 1, accepted = 1, not_accepted = 0 })
    S.sleep(1)
    assert.equal(1, #events_of(ns, "p1", "RouteNotAccepted"))
  end)

  it("no answer at all: one RouteNotAnswered Event after 30 s", function()
    local e = S.eventually(function() return events_of(ns, "p2", "RouteNotAnswered")[1] end, 50,
      "a RouteNotAnswered Event")
    local waited = S.now() - silent_since
    print(string.format("# RouteNotAnswered after %.1f s", waited))
    assert.is_true(waited >= 28, "reported too early")
    assert.equal("Warning", e.type)
    assert.truthy(e.message:find("HTTPRoute " .. ns .. "/p2", 1, true), e.message)
    assert.truthy(e.message:find("Gateway " .. ns .. "/gw", 1, true), e.message)
    S.sleep(2)
    assert.equal(1, #events_of(ns, "p2", "RouteNotAnswered"))
    assert.same({}, events_of(ns, "p1", "RouteNotAnswered"))
  end)

  it("after a restart the gauge is the same (derived from state) and nothing is re-reported",
    function()
      assert.is_true(op:stop())
      start()
      gauge(op, { pending = 1, accepted = 1, not_accepted = 0, unresolved = 0 })
      S.sleep(1)
      assert.equal(1, #events_of(ns, "p1", "RouteNotAccepted"))
    end)

  it("not accepted again, for another reason: a second Event", function()
    route_status(ns, "p1", "False", "NotAllowedByListeners",
      "No listeners included by this parent ref allowed this attachment.")
    S.eventually(function() return #events_of(ns, "p1", "RouteNotAccepted") == 2 end, 10,
      "a second RouteNotAccepted Event")
    local found = false
    for _, e in ipairs(events_of(ns, "p1", "RouteNotAccepted")) do
      if e.message:find("NotAllowedByListeners", 1, true) then found = true end
    end
    assert.is_true(found)
    gauge(op, { pending = 1, accepted = 0, not_accepted = 1 })
  end)

  it("the routes gone: the gauge forgets them", function()
    S.must("delete pod p1 p2 -n " .. ns .. " --grace-period=0 --force --wait=true")
    gauge(op, { pending = 0, accepted = 0, not_accepted = 0, unresolved = 0 })
  end)
end)
