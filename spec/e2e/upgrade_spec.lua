-- End-to-end: an in-place upgrade from the original Go operator (chart
-- 0.1.3). What it leaves behind is made here through the API as it made it:
-- its finalizer on every pod it selected, and children named after the pod
-- with the managed-by label but no ownerReference, written by a
-- controller-runtime client (Update operations of its own field manager).
-- Ours must take that finalizer off (and nothing else), adopt those
-- children in place, let deletions complete, and leave alone whatever is not
-- exactly such a child.

local S = require("spec.e2e.support")

local GO_FINALIZER = "envoy-router.comet.ml/finalizer"
local GO_MANAGER = "manager"            -- controller-runtime's default field manager

local function post(path, obj)
  local code = S.api("POST", path .. "?fieldManager=" .. GO_MANAGER, obj)
  assert(code == 201, "POST " .. path .. ": HTTP " .. tostring(code))
end

describe("an upgrade from the Go operator", function()
  local ns, op
  local uids, pods = {}, { "go-1", "go-2", "go-3" }

  lazy_setup(function()
    ns = S.namespace("e2e-upgrade")
    for i, name in ipairs(pods) do
      local finalizers = { GO_FINALIZER }
      if name == "go-2" then finalizers = { "example.com/keep", GO_FINALIZER } end
      S.apply({ apiVersion = "v1", kind = "Pod",
        metadata = { name = name, namespace = ns, finalizers = finalizers,
                     labels = { ["envoy-router/enabled"] = "true" } },
        spec = { containers = { { name = "app", image = "example.invalid/app:1" } } } })
      S.pod_status(ns, name, { ip = "10.83.0." .. i, ready = true })
      S.go_children(ns, name, "10.83.0." .. i)
      uids[name] = {}
      for _, kind in ipairs({ "service", "endpointslice", "httproute" }) do
        uids[name][kind] = S.get(ns, kind, name).metadata.uid
      end
    end
    -- Not exactly a child it would make: our label, but a name no pod has.
    post("/api/v1/namespaces/" .. ns .. "/services", {
      apiVersion = "v1", kind = "Service",
      metadata = { name = "not-a-pod", namespace = ns,
                   labels = { ["app.kubernetes.io/managed-by"] = "envoy-router" } },
      spec = { ports = { { port = 80 } } },
    })
    -- A pod deleted while no operator ran: it hangs in Terminating.
    S.must("delete pod go-3 -n " .. ns .. " --wait=false")
    assert.truthy(S.get(ns, "pod", "go-3").metadata.deletionTimestamp)
  end)

  lazy_teardown(function()
    if op then op:stop() end
    S.kubectl("patch pod go-2 -n " .. ns .. " --type=json -p "
      .. S.quote('[{"op":"remove","path":"/metadata/finalizers"}]'))
    S.cleanup(ns)
  end)

  it("takes the Go operator's finalizer off, and only that", function()
    local other_rv = S.get(ns, "service", "not-a-pod").metadata.resourceVersion
    op = S.operator({ "--watch-namespace", ns })
    op:wait_ready()
    S.eventually(function()
      for _, name in ipairs({ "go-1", "go-2" }) do
        for _, f in ipairs(S.get(ns, "pod", name).metadata.finalizers or {}) do
          if f == GO_FINALIZER then return false end
        end
      end
      return true
    end, 10, "finalizers removed; log " .. op.log)
    assert.same({ "example.com/keep" }, S.get(ns, "pod", "go-2").metadata.finalizers)
    assert.equal(other_rv, S.get(ns, "service", "not-a-pod").metadata.resourceVersion)
  end)

  it("lets a deletion that waited for it complete, and removes that pod's children", function()
    S.eventually(function() return S.get(ns, "pod", "go-3") == nil end, 10, "go-3 gone")
    S.eventually(function() return next((S.children_of(ns, "go-3"))) == nil
      and S.get(ns, "service", "go-3") == nil end, 15, "go-3's children gone")
  end)

  it("adopts the Go operator's children in place", function()
    for _, name in ipairs({ "go-1", "go-2" }) do
      local pod = S.get(ns, "pod", name)
      S.eventually(function()
        for _, kind in ipairs({ "service", "endpointslice", "httproute" }) do
          local o = S.get(ns, kind, name)
          local refs = o and o.metadata.ownerReferences
          if not (refs and refs[1] and refs[1].uid == pod.metadata.uid and refs[1].controller) then
            return false
          end
        end
        return true
      end, 10, name .. "'s children adopted; log " .. op.log)
      for _, kind in ipairs({ "service", "endpointslice", "httproute" }) do
        assert.equal(uids[name][kind], S.get(ns, kind, name).metadata.uid, kind .. " recreated")
      end
      local rt = S.get(ns, "httproute", name)
      assert.equal("envoy-router", rt.spec.parentRefs[1].name)
      assert.equal(1, rt.spec.rules[1].backendRefs[1].weight)
      assert.equal(name, S.get(ns, "endpointslice", name).endpoints[1].targetRef.name)
    end
    assert.is_nil(op:log_text():find("NameConflict", 1, true))
  end)

  it("a pod deleted now goes at once with its children", function()
    S.must("delete pod go-1 -n " .. ns .. " --wait=false")
    S.eventually(function() return S.get(ns, "pod", "go-1") == nil end, 10, "go-1 gone")
    S.eventually(function() return S.get(ns, "service", "go-1") == nil
      and S.get(ns, "endpointslice", "go-1") == nil
      and S.get(ns, "httproute", "go-1") == nil end, 15, "go-1's children gone")
  end)
end)
