-- End-to-end: children follow their pod through readiness, deletion and
-- label changes, come back when someone deletes or edits them by hand, and
-- a user's own object that holds a pod's child name is never touched.

local S = require("spec.e2e.support")

local function conditions(ns, name)
  local es = S.get(ns, "endpointslice", name)
  return es and es.endpoints and es.endpoints[1].conditions
end

local function none_left(ns, name)
  return not (S.get(ns, "service", name) or S.get(ns, "endpointslice", name)
    or S.get(ns, "httproute", name))
end

local function all_there(ns, name)
  return S.get(ns, "service", name) and S.get(ns, "endpointslice", name)
    and S.get(ns, "httproute", name)
end

describe("children follow the pod", function()
  local ns, op
  lazy_setup(function()
    ns = S.namespace("e2e-lifecycle")
    op = S.operator({ "--watch-namespace", ns })
    op:wait_ready()
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(ns)
  end)

  it("a pod that is not Ready gets an endpoint that is neither ready nor serving", function()
    S.pod(ns, "starting")
    S.pod_status(ns, "starting", { ip = "10.30.0.1", ready = false })
    local c = S.eventually(function() return conditions(ns, "starting") end)
    assert.same({ ready = false, serving = false, terminating = false }, c)
    S.pod_status(ns, "starting", { ip = "10.30.0.1", ready = true })
    S.eventually(function()
      local now = conditions(ns, "starting")
      return now and now.ready == true and now.serving == true
    end, 5, "endpoint ready once the pod is Ready")
  end)

  it("a pod deleted with a grace period drains: terminating, not ready", function()
    -- Bound to a node, the pod waits for a kubelet (none runs) with its
    -- deletionTimestamp set, as a real pod does while it shuts down.
    S.pod(ns, "leaving", { node = "node-a" })
    S.pod_status(ns, "leaving", { ip = "10.30.0.2", ready = true })
    S.eventually(function()
      local c = conditions(ns, "leaving")
      return c and c.ready == true
    end)
    S.must("delete pod leaving -n " .. ns .. " --grace-period=300 --wait=false")
    assert.truthy(S.get(ns, "pod", "leaving").metadata.deletionTimestamp)
    local c = S.eventually(function()
      local now = conditions(ns, "leaving")
      return now and now.terminating == true and now
    end, 5, "endpoint terminating")
    assert.is_false(c.ready)
    assert.is_true(all_there(ns, "leaving") ~= nil)
  end)

  it("a pod deleted for good (force, grace 0) loses all its children", function()
    S.pod(ns, "gone", { node = "node-a" })
    S.pod_status(ns, "gone", { ip = "10.30.0.3", ready = true })
    S.eventually(function() return all_there(ns, "gone") end)
    S.must("delete pod gone -n " .. ns .. " --grace-period=0 --force --wait=true")
    S.eventually(function() return none_left(ns, "gone") end, 5, "children of a deleted pod gone")
  end)

  it("a pod that loses the label loses its children and is otherwise left as it was", function()
    S.pod(ns, "unlabelled", { labels = { ["envoy-router/enabled"] = "true", team = "blue" } })
    S.pod_status(ns, "unlabelled", { ip = "10.30.0.4", ready = true })
    S.eventually(function() return all_there(ns, "unlabelled") end)
    S.must("label pod unlabelled -n " .. ns .. " envoy-router/enabled-")
    S.eventually(function() return none_left(ns, "unlabelled") end, 5,
      "children of an unlabelled pod gone")
    local before = S.get(ns, "pod", "unlabelled")
    assert.same({ team = "blue" }, before.metadata.labels)
    assert.is_nil(before.metadata.finalizers)
    assert.is_nil(before.metadata.deletionTimestamp)
    -- nothing writes to it afterwards either
    S.never(function()
      return S.get(ns, "pod", "unlabelled").metadata.resourceVersion ~= before.metadata.resourceVersion
    end, 1.5, "the pod was written to")
  end)

  it("a label put back brings the children back", function()
    S.pod(ns, "relabelled", { labels = { team = "green" } })
    S.pod_status(ns, "relabelled", { ip = "10.30.0.5", ready = true })
    S.never(function() return all_there(ns, "relabelled") end, 1, "children before the label")
    S.must("label pod relabelled -n " .. ns .. " envoy-router/enabled=true")
    S.eventually(function() return all_there(ns, "relabelled") end, 5, "children after the label")
  end)
end)

describe("children edited by hand", function()
  local ns, op
  lazy_setup(function()
    ns = S.namespace("e2e-repair")
    op = S.operator({ "--watch-namespace", ns })
    op:wait_ready()
    S.pod(ns, "p1")
    S.pod_status(ns, "p1", { ip = "10.31.0.1", ready = true })
    S.eventually(function() return all_there(ns, "p1") end)
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(ns)
  end)

  for _, kind in ipairs({ "service", "endpointslice", "httproute" }) do
    it("a deleted " .. kind .. " is back within 2 s", function()
      local old = S.get(ns, kind, "p1")
      S.must(string.format("delete %s p1 -n %s --wait=true", kind, ns))
      local t0 = S.now()
      local new = S.eventually(function()
        local o = S.get(ns, kind, "p1")
        return o and o.metadata.uid ~= old.metadata.uid and o
      end, 2, kind .. " recreated within 2 s")
      assert.is_true(S.now() - t0 <= 2.5)
      assert.equal("envoy-router", new.metadata.labels["app.kubernetes.io/managed-by"])
    end)
  end

  it("an EndpointSlice address changed by hand is put back", function()
    S.must("patch endpointslice p1 -n " .. ns .. " --type=json -p " ..
      S.quote('[{"op":"replace","path":"/endpoints/0/addresses/0","value":"10.99.99.99"}]'))
    S.eventually(function()
      local es = S.get(ns, "endpointslice", "p1")
      return es.endpoints[1].addresses[1] == "10.31.0.1"
    end, 5, "address restored")
  end)

  it("an endpoint condition changed by hand is put back", function()
    S.must("patch endpointslice p1 -n " .. ns .. " --type=json -p " ..
      S.quote('[{"op":"replace","path":"/endpoints/0/conditions/ready","value":false}]'))
    S.eventually(function() return conditions(ns, "p1").ready == true end, 5, "ready restored")
  end)

  it("a Service port changed by hand is put back", function()
    S.must("patch service p1 -n " .. ns .. " --type=json -p " ..
      S.quote('[{"op":"replace","path":"/spec/ports/0/port","value":81}]'))
    S.eventually(function()
      local p = S.get(ns, "service", "p1").spec.ports
      return #p == 1 and p[1].port == 80 and p[1].targetPort == 8080
    end, 5, "port 80 restored")
  end)

  it("an HTTPRoute path changed by hand is put back", function()
    S.must("patch httproute p1 -n " .. ns .. " --type=json -p " ..
      S.quote('[{"op":"replace","path":"/spec/rules/0/matches/0/path/value","value":"/other"}]'))
    S.eventually(function()
      local r = S.get(ns, "httproute", "p1")
      return r.spec.rules[1].matches[1].path.value == "/p1"
    end, 5, "path restored")
  end)

  it("leaves a user's own additions alone", function()
    S.must("label service p1 -n " .. ns .. " owner-note=kept")
    S.must("annotate service p1 -n " .. ns .. " example.com/note=kept")
    S.never(function()
      local s = S.get(ns, "service", "p1")
      return s.metadata.labels["owner-note"] ~= "kept"
        or s.metadata.annotations["example.com/note"] ~= "kept"
    end, 1.5, "user's label or annotation removed")
  end)
end)

describe("a user's Service that holds a pod's name", function()
  local ns, op, before
  lazy_setup(function()
    ns = S.namespace("e2e-conflict")
    S.apply({ apiVersion = "v1", kind = "Service",
      metadata = { name = "taken", namespace = ns, labels = { owner = "user" } },
      spec = { ports = { { name = "web", port = 1234, targetPort = 4321 } },
               selector = { app = "users-own" } } })
    before = S.get(ns, "service", "taken")
    op = S.operator({ "--watch-namespace", ns })
    op:wait_ready()
    S.pod(ns, "taken")
    S.pod_status(ns, "taken", { ip = "10.32.0.1", ready = true })
  end)
  lazy_teardown(function()
    if op then op:stop() end
    S.cleanup(ns)
  end)

  it("is logged as a conflict", function()
    S.eventually(function()
      return op:log_text():find("Service " .. ns .. "/taken already exists", 1, true)
    end, 5, "conflict in the log: " .. op.log)
  end)

  it("stays exactly as the user made it", function()
    S.never(function()
      local s = S.get(ns, "service", "taken")
      return s.metadata.uid ~= before.metadata.uid
        or s.metadata.resourceVersion ~= before.metadata.resourceVersion
    end, 2, "the user's Service was written")
    local s = S.get(ns, "service", "taken")
    assert.same({ owner = "user" }, s.metadata.labels)
    assert.is_nil(s.metadata.ownerReferences)
    assert.same(before.spec, s.spec)
  end)

  -- The first pass creates all three children at once and only learns of
  -- the conflict from the Service's 409; the retry removes the other two.
  local function slice_of_ours()
    for _, es in ipairs(S.list(ns, "endpointslices", "kubernetes.io/service-name=taken")) do
      if es.metadata.labels["app.kubernetes.io/managed-by"] == "envoy-router" then return true end
    end
    return false
  end

  it("gets no endpoints of the pod through an EndpointSlice of ours", function()
    -- an EndpointSlice labelled with the Service's name would add the pod's
    -- IP to the user's Service
    S.eventually(function() return not slice_of_ours() end, 5, "our EndpointSlice removed")
    S.never(slice_of_ours, 1.5, "an EndpointSlice of ours feeds the user's Service")
  end)

  it("gets no HTTPRoute of ours sending /taken to it", function()
    S.eventually(function() return not S.get(ns, "httproute", "taken") end, 5, "our HTTPRoute removed")
    S.never(function() return S.get(ns, "httproute", "taken") end, 1.5, "an HTTPRoute to the user's Service")
  end)

  it("the pod gets its children once the user's Service is gone", function()
    S.must("delete service taken -n " .. ns .. " --wait=true")
    S.eventually(function()
      local s = S.get(ns, "service", "taken")
      return s and s.metadata.labels["app.kubernetes.io/managed-by"] == "envoy-router"
        and all_there(ns, "taken")
    end, 70, "children after the conflict cleared")
  end)
end)
