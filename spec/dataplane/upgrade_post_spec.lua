-- The upgrade from an earlier envoy-router, which created children by POST
-- (their fields under an Update entry of its field manager) and applied
-- them only later, seen by a client through real Envoy Gateway and Envoy.
-- The children are made here as that version made them: what `envoy-router
-- render` gives for each pod (the same owners, labels and finalizer),
-- plus an annotation today's templates no longer produce, written by POST
-- with fieldManager=envoy-router; the route names its Service as a blocking
-- owner, as the one-write-per-round protocol did. Ours starts while a client
-- loops over every path: it hands the Update entries to its Apply entry (a
-- JSON patch of managedFields), prunes the annotation, keeps every uid, and
-- every answer is 200 from the path's own pod throughout.

local cjson = require("cjson")
local D = require("spec.dataplane.support")
local S = D.S

local ns = "dp-upgrade-post"
local names = { "old-1", "old-2", "old-3" }
local ips = { ["old-1"] = "10.244.12.1", ["old-2"] = "10.244.12.2", ["old-3"] = "10.244.12.3" }
local KINDS = {
  { kind = "service", path = "/api/v1/namespaces/%s/services" },
  { kind = "endpointslice", path = "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" },
  { kind = "httproute", path = "/apis/gateway.networking.k8s.io/v1/namespaces/%s/httproutes" },
}
local OLD = "example.com/written-by-an-older-template"

local function with_fields(kind, name)
  return cjson.decode(S.must(string.format("get %s %s -n %s -o json --show-managed-fields",
    kind, name, ns)))
end

-- Entries of envoy-router's field manager in an object, by operation.
local function entries(o)
  local n = { Apply = 0, Update = 0 }
  for _, mf in ipairs(o.metadata.managedFields or {}) do
    if mf.manager == "envoy-router" then n[mf.operation] = (n[mf.operation] or 0) + 1 end
  end
  return n
end

-- The children today's binary renders for the pod as it is in the cluster.
local function rendered(name, gw)
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(S.must("get pod " .. name .. " -n " .. ns .. " -o json"))
  f:close()
  local out = S.sh(string.format("%s render --pod %s --gateway-name %s --pod-port %d",
    S.quote(S.bin), S.quote(file), S.quote(gw.name), D.pod_port))
  os.remove(file)
  local list = cjson.decode(out)
  assert(#list == 3, "render gave " .. #list .. " children: " .. out)
  return list
end

describe("an upgrade from an envoy-router that created children by POST, under traffic", function()
  local gw, op, stand_ins
  local uids = {}

  lazy_setup(function()
    D.up()
    S.namespace(ns)
    gw = D.gateway("envoy-router", ns, { "--set", "gateway.port=87" })
    stand_ins = D.pods(ips)
    for _, name in ipairs(names) do
      S.apply({ apiVersion = "v1", kind = "Pod",
        metadata = { name = name, namespace = ns, labels = { ["envoy-router/enabled"] = "true" } },
        spec = { containers = { { name = "app", image = "example.invalid/app:1" } },
                 nodeName = "node-1" } })
      S.pod_status(ns, name, { ip = ips[name], ready = true })
      local by_kind = {}
      for _, o in ipairs(rendered(name, gw)) do by_kind[o.kind:lower()] = o end
      uids[name] = {}
      for _, k in ipairs(KINDS) do
        local o = by_kind[k.kind]
        o.metadata.annotations = { [OLD] = "x" }
        if k.kind == "httproute" then
          table.insert(o.metadata.ownerReferences, { apiVersion = "v1", kind = "Service",
            name = name, uid = uids[name].service, controller = false, blockOwnerDeletion = true })
        end
        local code = S.api("POST", string.format(k.path, ns) .. "?fieldManager=envoy-router", o)
        assert(code == 201, "POST " .. k.kind .. " " .. name .. ": HTTP " .. tostring(code))
        local got = with_fields(k.kind, name)
        uids[name][k.kind] = got.metadata.uid
        assert.are.same({ Apply = 0, Update = 1 }, entries(got))
      end
    end
  end)

  lazy_teardown(function()
    if stand_ins then stand_ins:stop() end
    D.teardown(ns, op)
  end)

  it("the older version's children answer through the Gateway", function()
    for _, name in ipairs(names) do D.wait_answer(gw.port, "/" .. name .. "/", 200, name, 30) end
  end)

  it("ours starts: Update entries handed to Apply, the old annotation pruned, no child "
    .. "recreated, every path 200 by its own pod throughout", function()
    local c = D.client(gw.port, D.paths(names))
    S.sleep(1)
    local t0 = S.now()
    op = D.operator(ns, gw)
    S.eventually(function()
      for _, name in ipairs(names) do
        for _, k in ipairs(KINDS) do
          local o = with_fields(k.kind, name)
          local n = entries(o)
          if n.Update ~= 0 or n.Apply ~= 1 or (o.metadata.annotations or {})[OLD] then
            return false
          end
        end
      end
      return true
    end, 30, "every child upgraded and pruned; log " .. op.log)
    local took = S.now() - t0
    -- Envoy Gateway translates what the operator wrote after its writes:
    -- keep the client running well past them.
    S.sleep(3)
    local answers = c:stop()
    local tally = D.assert_all_own(answers, names, 20, "the upgrade")
    for _, name in ipairs(names) do
      for _, k in ipairs(KINDS) do
        assert.are.equal(uids[name][k.kind], S.get(ns, k.kind, name).metadata.uid,
          name .. "'s " .. k.kind .. " recreated")
      end
    end
    local text = op:log_text()
    for _, bad in ipairs({ "status=422", "NameConflict", "ChildRejected" }) do
      assert.is_nil(text:find(bad, 1, true), bad .. " in " .. op.log)
    end
    local writes = S.sh("grep -c 'reconcile: writing' " .. S.quote(op.log)):match("%d+")
    print(string.format("# upgrade from POST-created children: %d answers, all 200 by their own "
      .. "pod (%s); %s writes; every child upgraded and pruned %.2f s after the operator started",
      #answers, tally, writes, took))
  end)
end)
