-- The upgrade from the original Go operator, seen by a client through real
-- Envoy Gateway and Envoy. What the Go operator leaves behind is made here as
-- it made it (spec/e2e/upgrade_spec.lua checks the objects alone): pods
-- carrying its finalizer, their children named after the pod with the
-- managed-by label and no ownerReference, and a Gateway named as its chart
-- named it (`envoy-router`, set through its value key operator.gatewayName).
-- Traffic flows to those children before ours starts; while ours takes the
-- finalizers off and adopts the children, every path keeps answering 200
-- from its own pod; a pod deleted afterwards drains and ends 404.

local D = require("spec.dataplane.support")
local S = D.S

local GO_FINALIZER = "envoy-router.comet.ml/finalizer"
local GO_GATEWAY = "envoy-router"

local ns = "dp-upgrade"
local names = { "go-1", "go-2", "go-3" }
local ips = { ["go-1"] = "10.244.11.1", ["go-2"] = "10.244.11.2", ["go-3"] = "10.244.11.3" }

local function has_go_finalizer(name)
  for _, f in ipairs(S.get(ns, "pod", name).metadata.finalizers or {}) do
    if f == GO_FINALIZER then return true end
  end
  return false
end

-- True when every child of `name` has the pod as its controller owner.
local function adopted(name)
  local uid = S.get(ns, "pod", name).metadata.uid
  for _, kind in ipairs({ "service", "endpointslice", "httproute" }) do
    local o = S.get(ns, kind, name)
    local refs = o and o.metadata.ownerReferences
    if not (refs and refs[1] and refs[1].uid == uid and refs[1].controller) then return false end
  end
  return true
end

describe("an upgrade from the Go operator, under traffic", function()
  local gw, op, stand_ins
  local uids = {}

  lazy_setup(function()
    D.up()
    S.namespace(ns)
    -- The Go chart's value key for the Gateway's name, in a release whose
    -- name differs from it (README, "Upgrading from the Go operator").
    gw = D.gateway("router", ns, { "--set", "operator.gatewayName=" .. GO_GATEWAY,
                                   "--set", "gateway.port=85" })
    stand_ins = D.pods(ips)
    for _, name in ipairs(names) do
      -- Bound to a node, so that a deletion is graceful, as with a kubelet.
      S.apply({ apiVersion = "v1", kind = "Pod",
        metadata = { name = name, namespace = ns, finalizers = { GO_FINALIZER },
                     labels = { ["envoy-router/enabled"] = "true" } },
        spec = { containers = { { name = "app", image = "example.invalid/app:1" } },
                 nodeName = "node-1" } })
      S.pod_status(ns, name, { ip = ips[name], ready = true })
      S.go_children(ns, name, ips[name], { pod_port = D.pod_port, gateway = GO_GATEWAY })
      uids[name] = {}
      for _, kind in ipairs({ "service", "endpointslice", "httproute" }) do
        uids[name][kind] = S.get(ns, kind, name).metadata.uid
      end
    end
  end)

  lazy_teardown(function()
    if op then op:stop() end
    if stand_ins then stand_ins:stop() end
    for _, name in ipairs(names) do
      S.kubectl("patch pod " .. name .. " -n " .. ns .. " --type=json -p "
        .. S.quote('[{"op":"remove","path":"/metadata/finalizers"}]'))
    end
    S.cleanup(ns)
  end)

  it("the Go operator's children answer through the Gateway named as its chart named it",
  function()
    assert.are.equal(GO_GATEWAY, gw.name)
    for _, name in ipairs(names) do
      D.wait_answer(gw.port, "/" .. name .. "/", 200, name, 30)
      assert.is_true(has_go_finalizer(name))
      assert.is_nil(S.get(ns, "service", name).metadata.ownerReferences)
    end
  end)

  it("ours starts: finalizers off, children adopted in place, every path 200 by its own pod "
    .. "throughout", function()
    local c = D.client(gw.port, D.paths(names))
    S.sleep(1)
    local t0 = S.now()
    op = D.operator(ns, gw)
    S.eventually(function()
      for _, name in ipairs(names) do
        if has_go_finalizer(name) or not adopted(name) then return false end
      end
      return true
    end, 30, "finalizers removed and children adopted; log " .. op.log)
    local took = S.now() - t0
    -- Envoy Gateway translates the adopted objects after the operator's
    -- writes: keep the client running well past them.
    S.sleep(3)
    local answers = c:stop()
    local tally = D.assert_all_own(answers, names, 20, "the handover")
    for _, name in ipairs(names) do
      for _, kind in ipairs({ "service", "endpointslice", "httproute" }) do
        assert.are.equal(uids[name][kind], S.get(ns, kind, name).metadata.uid,
          name .. "'s " .. kind .. " recreated")
      end
    end
    assert.is_nil(op:log_text():find("NameConflict", 1, true))
    print(string.format("# handover: %d answers, all 200 by their own pod (%s); "
      .. "finalizers off and children adopted %.2f s after the operator started",
      #answers, tally, took))
  end)

  it("a pod deleted afterwards: its path drains and ends 404, the deletion completes, "
    .. "the other paths keep answering", function()
    local c = D.client(gw.port, D.paths(names))
    S.sleep(0.5)
    S.must("delete pod go-1 -n " .. ns .. " --grace-period=30 --wait=false")
    D.wait_answer(gw.port, "/go-1/", 503, nil, 10)
    -- The kubelet would stop the container, then the pod object goes; no
    -- finalizer holds it any more.
    S.must("delete pod go-1 -n " .. ns .. " --grace-period=0 --force")
    D.wait_answer(gw.port, "/go-1/", 404, nil, 10)
    S.eventually(function() return S.get(ns, "pod", "go-1") == nil end, 10, "go-1 gone")
    S.eventually(function()
      return S.get(ns, "service", "go-1") == nil and S.get(ns, "endpointslice", "go-1") == nil
        and S.get(ns, "httproute", "go-1") == nil
    end, 30, "go-1's children gone")
    S.sleep(0.5)
    local answers = c:stop()
    local tally = select(2, D.tally(answers))
    local seq = D.sequence(answers, "/go-1/")
    assert.are.equal("200 go-1", seq[1], tally)
    assert.are.equal("404", seq[#seq]:match("^%d+"), table.concat(seq, " -> "))
    for _, a in ipairs(answers) do
      assert.are_not.equal(0, a.status, "no answer seen: " .. tally)
      assert.are_not.equal(500, a.status, "a 500 seen: " .. tally .. "; /go-1/: "
        .. table.concat(seq, " -> "))
      if a.path ~= "/go-1/" then
        assert.are.equal(200, a.status, tally)
        assert.are.equal(a.path:match("^/([^/]+)/"), a.first, tally)
      end
    end
  end)
end)
