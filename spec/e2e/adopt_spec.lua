-- A child of ours whose managed-by label is taken off by hand drops out of
-- the operator's watch (its selector is that label). The operator must still
-- recognise it by its controller reference to the pod, put the label back,
-- and keep the pod's other children.
local S = require("spec.e2e.support")

describe("a child with its label taken off by hand", function()
  local ns, op

  setup(function()
    ns = S.namespace("e2e-adopt")
    S.pod(ns, "a1")
    S.pod_status(ns, "a1", { ip = "10.40.0.1", ready = true })
    op = S.operator({ "--watch-namespace", ns })
    op:wait_ready()
    S.eventually(function() return S.get(ns, "httproute", "a1") end, 5)
  end)

  teardown(function()
    if op then op:stop() end
  end)

  it("is adopted again and the pod keeps its route", function()
    local uid = S.get(ns, "service", "a1").metadata.uid
    S.must("label service a1 -n " .. ns .. " app.kubernetes.io/managed-by-")
    S.eventually(function()
      local svc = S.get(ns, "service", "a1")
      return svc and svc.metadata.labels["app.kubernetes.io/managed-by"] == "envoy-router"
    end, 10, "label restored")
    -- The same object, repaired, not replaced.
    assert.are.equal(uid, S.get(ns, "service", "a1").metadata.uid)
    S.never(function() return S.get(ns, "httproute", "a1") == nil end, 1.5,
      "the route went away")
    assert.truthy(S.get(ns, "endpointslice", "a1"))
    assert.is_nil(op:log_text():find("NameConflict", 1, true))
  end)
end)
