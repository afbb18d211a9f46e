-- spec/helm/rbac_spec.lua: the chart's RBAC is exactly what the operator
-- uses. The chart's own ServiceAccount and RBAC objects (helm template,
-- applied to the loopback API server) give a token (`kubectl create token`);
-- the operator runs with it, with leader election, and is driven through
-- every write path it has: create, apply, prune, delete, adopt, finalizer
-- removal, Events and the Lease. A 403 anywhere fails the spec.
--
--   busted --lua=lua5.4 -o TAP spec/helm/rbac_spec.lua   (from the repo root)

local S = require("spec.e2e.support")

local root = os.getenv("ENVOY_ROUTER_ROOT") or "."
local helm_bin = root .. "/.cache/bin/helm"
local chart = root .. "/charts/envoy-router"
local RELEASE = "rb"
local SA = "rb-envoy-router"
local GO_FINALIZER = "envoy-router.comet.ml/finalizer"

local function forbidden(op)
  local text = op:log_text()
  for _, pat in ipairs({ "status=403", '"status":"403"', "HTTP 403", "forbidden" }) do
    if text:find(pat, 1, true) then return pat end
  end
  return nil
end

describe("the chart's RBAC", function()
  local ns, op, kc

  local function start(extra)
    local args = { "--kubeconfig", kc, "--watch-namespace", ns, "--leader-elect=true",
                   "--leader-election-id", "rb-envoy-router", "--leader-election-namespace", ns }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    op = S.operator(args)
    op:wait_ready()
  end

  lazy_setup(function()
    ns = S.namespace("helm-rbac")
    -- Only the ServiceAccount and RBAC objects of the chart, as installed
    -- with one namespace watched and two replicas (so the Lease Role too).
    local out, ok, err = S.sh(string.format(
      "%s template %s %s -n %s --set operator.watchNamespace=%s --set replicaCount=2 "
        .. "--show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml",
      helm_bin, RELEASE, S.quote(chart), ns, ns))
    assert(ok, "helm template: " .. err)
    assert.truthy(out:find("kind: Role\n", 1, true))
    S.must("apply --server-side -f -", out)
    kc = S.sa_kubeconfig(ns, SA)
    -- A pod for every path: plain, one with the Go operator's finalizer
    -- (and one of its children), one whose name someone else holds.
    S.pod(ns, "r-plain")
    S.pod_status(ns, "r-plain", { ip = "10.84.0.1", ready = true })
    S.apply({ apiVersion = "v1", kind = "Pod",
      metadata = { name = "r-go", namespace = ns, finalizers = { GO_FINALIZER },
                   labels = { ["envoy-router/enabled"] = "true" } },
      spec = { containers = { { name = "app", image = "example.invalid/app:1" } } } })
    S.pod_status(ns, "r-go", { ip = "10.84.0.2", ready = true })
    S.apply({ apiVersion = "v1", kind = "Service",
      metadata = { name = "r-go", namespace = ns,
                   labels = { ["app.kubernetes.io/managed-by"] = "envoy-router" } },
      spec = { ports = { { name = "http", port = 80, targetPort = 8080, protocol = "TCP" } } } })
    S.apply({ apiVersion = "v1", kind = "Service",
      metadata = { name = "r-taken", namespace = ns }, spec = { ports = { { port = 80 } } } })
    S.pod(ns, "r-taken")
    S.pod_status(ns, "r-taken", { ip = "10.84.0.3", ready = true })
  end)

  lazy_teardown(function()
    if op then op:stop() end
    if kc then os.remove(kc) end
    S.cleanup(ns)
  end)

  it("lets the operator take the Lease, create, adopt, unfinalize and post Events", function()
    start({ "--rewrite-prefix=true" })
    S.eventually(function()
      local lease = S.get(ns, "lease", "rb-envoy-router")
      return lease and lease.spec.holderIdentity ~= nil
    end, 20, "Lease held; log " .. op.log)
    S.eventually(function()
      local n = S.children_of(ns, "r-plain")
      return n.Service == 1 and n.EndpointSlice == 1 and n.HTTPRoute == 1
    end, 15, "r-plain's children created; log " .. op.log)
    S.eventually(function()
      local svc = S.get(ns, "service", "r-go")
      return svc.metadata.ownerReferences ~= nil
        and (S.get(ns, "pod", "r-go").metadata.finalizers == nil)
    end, 15, "r-go's Service adopted and finalizer removed; log " .. op.log)
    S.eventually(function()
      for _, e in ipairs(S.list(ns, "events")) do
        if e.reason == "NameConflict" and e.involvedObject.name == "r-taken" then return true end
      end
      return false
    end, 15, "NameConflict Event; log " .. op.log)
    assert.is_nil(forbidden(op), "403 in " .. op.log)
  end)

  it("lets it apply changes, prune fields and delete children", function()
    op:stop()
    start({})          -- --rewrite-prefix off: the rewrite is pruned
    S.eventually(function()
      local rt = S.get(ns, "httproute", "r-plain")
      return rt and rt.spec.rules[1].filters == nil
    end, 15, "rewrite pruned; log " .. op.log)
    S.pod_status(ns, "r-plain", { ip = "10.84.1.1", ready = false })
    S.eventually(function()
      local es = S.get(ns, "endpointslice", "r-plain")
      return es.endpoints[1].addresses[1] == "10.84.1.1"
    end, 10, "apply of a new address")
    S.must("label pod r-plain -n " .. ns .. " envoy-router/enabled-")
    S.eventually(function() return next((S.children_of(ns, "r-plain"))) == nil end, 10,
      "children deleted")
    assert.is_nil(forbidden(op), "403 in " .. op.log)
    assert.is_true(op:stop())
    -- The Lease is released on the way out: its update is allowed too.
    assert.is_nil(forbidden(op), "403 in " .. op.log)
  end)
end)
