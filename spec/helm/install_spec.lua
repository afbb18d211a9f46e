-- spec/helm/install_spec.lua: `helm install` of charts/envoy-router into the
-- loopback API server, in two namespaces (the second with
-- values-secondary.yaml), then the operator run out of cluster exactly as
-- each installed Deployment would run it: its container args, its env (the
-- downward API resolved as a kubelet would), an empty environment otherwise,
-- and a kubeconfig holding a token of the release's own ServiceAccount, so
-- the chart's RBAC is what the operator gets. Nothing runs the Deployments
-- (no kubelet); the chart's hooks are skipped (--no-hooks).
--
--   busted --lua=lua5.4 -o TAP spec/helm/install_spec.lua   (from the repo root)
--
-- Needs charts/envoy-router/charts/ populated (make helm-deps).

local cjson = require("cjson")
local S = require("spec.e2e.support")

local root = os.getenv("ENVOY_ROUTER_ROOT") or "."
local helm_bin = root .. "/.cache/bin/helm"
local chart = root .. "/charts/envoy-router"
local q = S.quote

local function helm(args)
  return S.sh("KUBECONFIG=" .. q(S.kubeconfig()) .. " " .. helm_bin .. " " .. args)
end

local function must_helm(args)
  local out, ok, err = helm(args)
  assert(ok, "helm " .. args .. " failed: " .. err .. out)
  return out
end

-- Ports no socket uses (any state, from /proc/net/tcp{,6}), below the
-- kernel's ephemeral range so an outgoing connection cannot take one before
-- the operator binds it; distinct from each other.
local taken = {}
math.randomseed(os.time())
local function free_port()
  for _, f in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    local h = io.open(f, "r")
    if h then
      for line in h:lines() do
        local port = line:match("^%s*%d+:%s+%x+:(%x+)%s")
        if port then taken[tonumber(port, 16)] = true end
      end
      h:close()
    end
  end
  for _ = 1, 1000 do
    local p = math.random(20000, 32000)
    if not taken[p] then
      taken[p] = true
      return p
    end
  end
  error("no free port")
end

-- The operator of an installed release: args and env of its Deployment's
-- container, started under `env -i` with only that env. It is driven with
-- spec/e2e/support.lua's operator methods (stop, http, metric, log_text).

local function start_operator(ns, release)
  local deploys = S.list(ns, "deployment", "app.kubernetes.io/instance=" .. release
    .. ",app.kubernetes.io/component=operator")
  assert(#deploys == 1, "expected one operator Deployment in " .. ns .. ", got " .. #deploys)
  local d = deploys[1]
  local c = d.spec.template.spec.containers[1]
  local fake_pod = d.metadata.name .. "-0"
  local env = {}
  for _, e in ipairs(c.env or {}) do
    local v = e.value
    if e.valueFrom then
      local path = e.valueFrom.fieldRef and e.valueFrom.fieldRef.fieldPath
      if path == "metadata.name" then v = fake_pod
      elseif path == "metadata.namespace" then v = ns
      else error("unhandled valueFrom in " .. ns .. ": " .. cjson.encode(e.valueFrom)) end
    end
    env[#env + 1] = e.name .. "=" .. q(v)
  end
  local kubeconfig = S.sa_kubeconfig(ns, d.spec.template.spec.serviceAccountName)
  local args = {}
  for _, a in ipairs(c.args or {}) do args[#args + 1] = q(a) end
  args[#args + 1] = q("--kubeconfig=" .. kubeconfig)
  -- Logs stay in build/helm/ for a look after the run.
  S.sh("mkdir -p " .. q(root .. "/build/helm"))
  local log = root .. "/build/helm/operator-" .. release .. ".log"
  local cmd = string.format("exec env -i %s %s %s", table.concat(env, " "), q(S.bin),
    table.concat(args, " "))
  local pid = S.sh("(" .. cmd .. " >" .. log .. " 2>&1 & echo $!)"):match("%d+")
  local op = S.adopt({ pid = tonumber(pid), log = log, cmd = cmd, args = c.args,
    kubeconfig = kubeconfig })
  for _, a in ipairs(c.args) do
    op.health_port = op.health_port
      or tonumber(a:match("^%-%-health%-probe%-bind%-address=:(%d+)$"))
    op.metrics_port = op.metrics_port or tonumber(a:match("^%-%-metrics%-bind%-address=:(%d+)$"))
  end
  return op
end

-- Stops an operator and removes its kubeconfig.
local function stop_operator(op)
  op:stop()
  os.remove(op.kubeconfig)
end

local function namespaces_logged(op)
  local seen = {}
  for line in op:log_text():gmatch("[^\n]+") do
    local ok, rec = pcall(cjson.decode, line)
    if ok and type(rec) == "table" then
      for k, v in pairs(rec) do
        if type(v) == "string" then
          if k == "namespace" then seen[v] = true end
          for ns in v:gmatch("(helm%-install%-%d)[/ ]") do seen[ns] = true end
          local ns = v:match("^(helm%-install%-%d)$")
          if ns then seen[ns] = true end
        end
      end
    end
  end
  return seen
end

-- A cluster-scoped object as a table, or nil.
local function cget(kind, name)
  local out, ok = S.kubectl(string.format("get %s %s -o json", kind, q(name)))
  if not ok then return nil end
  return cjson.decode(out)
end

local function children(ns)
  local out = {}
  for _, kind in ipairs({ "service", "endpointslice", "httproute" }) do
    for _, o in ipairs(S.list(ns, kind, "app.kubernetes.io/managed-by=envoy-router")) do
      out[#out + 1] = o
    end
  end
  return out
end

local function release_objects(ns, release)
  local out = S.must(string.format(
    "get deployment,service,serviceaccount,configmap,role,rolebinding,gateway,envoyproxy,"
      .. "networkpolicy,poddisruptionbudget -n %s "
      .. "-l app.kubernetes.io/instance=%s -o name", ns, release))
  local cluster = S.must("get clusterrole,clusterrolebinding -o name -l app.kubernetes.io/instance="
    .. release)
  return (out .. cluster):gsub("%s+$", "")
end

describe("helm install of charts/envoy-router", function()
  local ns1, ns2, ns3 = "helm-install-1", "helm-install-2", "helm-install-3"
  local r1, r2, r3 = "first", "second", "third"
  local gw1, gw2 = "first-envoy-router-gateway", "second-envoy-router-gateway"
  -- Not the default class name: other suites' fixtures may hold a GatewayClass
  -- "envoy-router" that no Helm release owns.
  local class = "helm-install-test"
  local ops = {}

  setup(function()
    for _, rn in ipairs({ { r1, ns1 }, { r2, ns2 }, { r3, ns3 } }) do
      helm(string.format("uninstall %s -n %s --wait --timeout 60s", rn[1], rn[2]))
    end
    S.namespace(ns1)
    S.namespace(ns2)
    S.namespace(ns3)
  end)

  teardown(function()
    for _, op in pairs(ops) do stop_operator(op) end
    for _, rn in ipairs({ { r1, ns1 }, { r2, ns2 }, { r3, ns3 } }) do
      helm(string.format("uninstall %s -n %s", rn[1], rn[2]))
    end
    for _, ns in ipairs({ ns1, ns2, ns3 }) do
      S.kubectl("delete namespace " .. ns .. " --wait=false")
    end
  end)

  it("installs the first namespace: Envoy Gateway controller and CRDs, GatewayClass, Gateway, "
    .. "operator, with the production values (NetworkPolicy, extraEnv, commonLabels, Envoy "
    .. "proxy replicas and budget)",
  function()
    local out = must_helm(string.format(
      "install %s %s -n %s --no-hooks --set operator.watchNamespace=%s --set gateway.className=%s "
        .. "--set metrics.port=%d --set operator.healthPort=%d --set networkPolicy.enabled=true "
        .. "--set extraEnv[0].name=ENVOY_ROUTER_HOSTNAME --set extraEnv[0].value=web.example.com "
        .. "--set commonLabels.team=payments",
      r1, q(chart), ns1, ns1, class, free_port(), free_port()))
    -- It watches its own namespace: no all-namespaces warning.
    assert.is_nil(out:find("WARNING", 1, true), out)
    -- The NetworkPolicy the API server accepted: ingress to the health and
    -- metrics ports only, egress to the API server ports only.
    local np = S.get(ns1, "networkpolicy", "first-envoy-router")
    assert.is_truthy(np, "no NetworkPolicy first-envoy-router")
    local d = S.get(ns1, "deployment", "first-envoy-router")
    local ports = {}
    for _, p in ipairs(d.spec.template.spec.containers[1].ports) do
      ports[p.name] = p.containerPort
    end
    assert.are.same({ ports.health, ports["http-metrics"] },
      { np.spec.ingress[1].ports[1].port, np.spec.ingress[2].ports[1].port })
    local egress = np.spec.egress[1].ports
    assert.are.same({ 443, 6443 }, { egress[1].port, egress[2].port })
    assert.are.same({ "Ingress", "Egress" }, np.spec.policyTypes)
    -- commonLabels on the chart's objects, not on its selectors.
    assert.are.equal("payments", d.metadata.labels.team)
    assert.are.equal("payments", S.get(ns1, "gateway", gw1).metadata.labels.team)
    assert.is_nil(d.spec.selector.matchLabels.team)
    -- Leader election is on with one replica too, and the rollout keeps RollingUpdate.
    assert.are.equal("RollingUpdate", d.spec.strategy.type)
    assert.is_nil(S.get(ns1, "poddisruptionbudget", "first-envoy-router"))
    -- Two Envoy proxies with a budget, as the real EnvoyProxy CRD accepted them.
    local ep = S.get(ns1, "envoyproxy", gw1)
    assert.are.equal(2, ep.spec.provider.kubernetes.envoyDeployment.replicas)
    assert.are.equal(1, ep.spec.provider.kubernetes.envoyPDB.minAvailable)
    assert.is_truthy(S.get(ns1, "deployment", "envoy-gateway"))
    assert.is_truthy(S.get(ns1, "deployment", "first-envoy-router"))
    assert.is_truthy(S.get(ns1, "service", "first-envoy-router-metrics"))
    assert.is_truthy(S.get(ns1, "role", "first-envoy-router"))
    assert.is_truthy(S.get(ns1, "envoyproxy", gw1))
    local gc = cget("gatewayclass", class)
    assert.are.equal("gateway.envoyproxy.io/gatewayclass-controller", gc.spec.controllerName)
    assert.are.equal("keep", gc.metadata.annotations["helm.sh/resource-policy"])
    local gw = S.get(ns1, "gateway", gw1)
    assert.are.equal(class, gw.spec.gatewayClassName)
    assert.are.equal(80, gw.spec.listeners[1].port)
    -- Envoy Gateway's own CRDs came with the subchart.
    assert.is_truthy(cget("crd", "envoyproxies.gateway.envoyproxy.io"))
    -- The watched namespace is the release's: no cluster-wide grant.
    assert.are.equal("", S.must("get clusterrole -o name -l app.kubernetes.io/instance=" .. r1
      .. ",app.kubernetes.io/name=envoy-router"):gsub("%s+$", ""))
  end)

  it("installs the second namespace with values-secondary.yaml: Gateway and operator only "
    .. "(security contexts without a fixed UID, as OpenShift's restricted profile wants)",
  function()
    must_helm(string.format(
      "install %s %s -n %s --no-hooks -f %s --set gateway.className=%s "
        .. "--set metrics.port=%d --set operator.healthPort=%d "
        .. "--set podSecurityContext.runAsUser=null --set podSecurityContext.runAsGroup=null "
        .. "--set securityContext.runAsUser=null --set securityContext.runAsGroup=null",
      r2, q(chart), ns2, q(chart .. "/values-secondary.yaml"), class, free_port(), free_port()))
    local d = S.get(ns2, "deployment", "second-envoy-router")
    local psc = d.spec.template.spec.securityContext
    local csc = d.spec.template.spec.containers[1].securityContext
    assert.is_nil(psc.runAsUser)
    assert.is_nil(csc.runAsUser)
    assert.is_true(psc.runAsNonRoot)
    assert.is_true(csc.readOnlyRootFilesystem)
    local deploys = S.list(ns2, "deployment")
    assert.are.equal(1, #deploys)
    assert.are.equal("second-envoy-router", deploys[1].metadata.name)
    assert.is_truthy(S.get(ns2, "gateway", gw2))
    assert.is_truthy(S.get(ns2, "role", "second-envoy-router"))
    local manifest = must_helm("get manifest " .. r2 .. " -n " .. ns2)
    assert.is_nil(manifest:find("kind: GatewayClass", 1, true))
    assert.is_nil(manifest:find("kind: ClusterRole", 1, true))
    -- The GatewayClass is still the first release's.
    local gc = cget("gatewayclass", class)
    assert.are.equal(r1, gc.metadata.annotations["meta.helm.sh/release-name"])
  end)

  it("runs each operator with its Deployment's args and env and its ServiceAccount's token",
  function()
    ops[1] = start_operator(ns1, r1)
    ops[2] = start_operator(ns2, r2)
    for i, op in ipairs(ops) do
      assert.is_truthy(op.health_port, "no health port in " .. op.cmd)
      S.eventually(function()
        local _, code = op:http(op.health_port, "/readyz")
        return code == 200
      end, 15, "operator " .. i .. " ready; log: " .. op:log_text())
      local _, code = op:http(op.health_port, "/healthz")
      assert.are.equal(200, code)
      local _, mcode = op:http(op.metrics_port, "/metrics")
      assert.are.equal(200, mcode)
    end
    local joined = table.concat(ops[2].args, " ")
    assert.is_truthy(joined:find("--watch-namespace=" .. ns2, 1, true))
    assert.is_truthy(joined:find("--gateway-name=" .. gw2, 1, true))
    -- Leader election is on by default: each holds its own release's Lease
    -- under the pod name the downward API gives.
    for i, rn in ipairs({ { r1, ns1 }, { r2, ns2 } }) do
      local name = rn[1] .. "-envoy-router"
      S.eventually(function()
        local l = S.get(rn[2], "lease", name)
        return l and l.spec.holderIdentity == name .. "-0"
      end, 15, "Lease " .. name .. " held by " .. name .. "-0; log: " .. ops[i]:log_text())
    end
  end)

  it("gives labelled pods in each namespace their children from their own install only", function()
    S.pod(ns1, "web-a")
    S.pod_status(ns1, "web-a", { ip = "10.244.1.10", ready = true })
    S.pod(ns2, "web-b")
    S.pod_status(ns2, "web-b", { ip = "10.244.2.10", ready = true })

    local expect = { [ns1] = { pod = "web-a", gw = gw1, ip = "10.244.1.10" },
                     [ns2] = { pod = "web-b", gw = gw2, ip = "10.244.2.10" } }
    for ns, e in pairs(expect) do
      local route = S.eventually(function() return S.get(ns, "httproute", e.pod) end, 10,
        "HTTPRoute " .. e.pod .. " in " .. ns)
      assert.are.equal(e.gw, route.spec.parentRefs[1].name)
      -- extraEnv reached the first operator (ENVOY_ROUTER_HOSTNAME), only it.
      if ns == ns1 then
        assert.are.same({ "web.example.com" }, route.spec.hostnames)
      else
        assert.is_nil(route.spec.hostnames)
      end
      assert.are.equal("/" .. e.pod, route.spec.rules[1].matches[1].path.value)
      local svc = S.eventually(function() return S.get(ns, "service", e.pod) end, 10)
      assert.are.equal(80, svc.spec.ports[1].port)
      assert.are.equal(8080, svc.spec.ports[1].targetPort)
      local slice = S.eventually(function()
        local items = S.list(ns, "endpointslice", "kubernetes.io/service-name=" .. e.pod)
        return items[1]
      end, 10)
      assert.are.same({ e.ip }, slice.endpoints[1].addresses)
      -- Only this pod's children are here.
      local mine = children(ns)
      assert.are.equal(3, #mine)
      for _, o in ipairs(mine) do
        assert.are.equal(e.pod, o.metadata.labels["envoy-router/pod"])
      end
    end
    -- No operator attaches the other namespace's pod to its own Gateway, even later.
    S.never(function()
      local r = S.get(ns2, "httproute", "web-b")
      return r and r.spec.parentRefs[1].name ~= gw2
    end, 1, "an HTTPRoute in " .. ns2 .. " pointing elsewhere than " .. gw2)
    assert.are.equal(1, ops[1]:metric("envoy_router_managed_pods"))
    assert.are.equal(1, ops[2]:metric("envoy_router_managed_pods"))
    -- Each operator's log names its own namespace and never the other.
    local seen1, seen2 = namespaces_logged(ops[1]), namespaces_logged(ops[2])
    assert.is_true(seen1[ns1], "operator 1 never logged " .. ns1 .. ":\n" .. ops[1]:log_text())
    assert.is_nil(seen1[ns2], "operator 1 logged " .. ns2 .. ":\n" .. ops[1]:log_text())
    assert.is_true(seen2[ns2], "operator 2 never logged " .. ns2 .. ":\n" .. ops[2]:log_text())
    assert.is_nil(seen2[ns1], "operator 2 logged " .. ns1 .. ":\n" .. ops[2]:log_text())
    for _, op in ipairs(ops) do
      assert.is_nil(op:log_text():find("HTTP 403", 1, true),
        "RBAC denied something:\n" .. op:log_text())
    end
  end)

  it("uninstalls: no release object is left, pods delete at once and leave no operator-made "
    .. "object; the GatewayClass stays", function()
    must_helm("uninstall " .. r2 .. " -n " .. ns2 .. " --wait --timeout 60s")
    must_helm("uninstall " .. r1 .. " -n " .. ns1 .. " --wait --timeout 60s")
    -- Their Deployments are gone, so are the operators.
    assert.is_nil(S.get(ns1, "deployment", "first-envoy-router"))
    assert.is_nil(S.get(ns2, "deployment", "second-envoy-router"))
    for _, op in ipairs(ops) do stop_operator(op) end
    ops = {}
    assert.are.equal("", release_objects(ns1, r1))
    assert.are.equal("", release_objects(ns2, r2))
    assert.is_nil(S.get(ns1, "deployment", "envoy-gateway"))
    -- No finalizer on the pods: deletion completes without any operator.
    for ns, pod in pairs({ [ns1] = "web-a", [ns2] = "web-b" }) do
      assert.is_nil(S.get(ns, "pod", pod).metadata.finalizers)
      S.must(string.format("delete pod %s -n %s --wait=true --timeout=20s", pod, ns))
    end
    -- Their children go with them (ownerReferences, kube-controller-manager's
    -- garbage collector, which can take a while after new CRDs appeared).
    for _, ns in ipairs({ ns1, ns2 }) do
      local left
      local ok = pcall(S.eventually, function()
        left = children(ns)
        return #left == 0
      end, 120)
      local names = {}
      for _, o in ipairs(left) do names[#names + 1] = o.kind .. "/" .. o.metadata.name end
      assert(ok, "operator-made objects left in " .. ns .. ": " .. table.concat(names, " "))
    end
    local gc = cget("gatewayclass", class)
    assert.is_truthy(gc, "GatewayClass " .. class .. " was removed")
    assert.are.equal("keep", gc.metadata.annotations["helm.sh/resource-policy"])
  end)

  it("a default install (all namespaces) with two replicas: NOTES warn, a PodDisruptionBudget, "
    .. "topology spread; its ClusterRole and Lease Role run the operator as leader", function()
    local out = must_helm(string.format(
      "install %s %s -n %s --no-hooks --set envoy-gateway.enabled=false "
        .. "--set gateway.createClass=false --set replicaCount=2 "
        .. "--set metrics.port=%d --set operator.healthPort=%d "
        .. "--set topologySpreadConstraints[0].maxSkew=1 "
        .. "--set topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname "
        .. "--set topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
      r3, q(chart), ns3, free_port(), free_port()))
    assert.is_truthy(out:find("WARNING: this install watches ALL namespaces", 1, true), out)
    local pdb = S.get(ns3, "poddisruptionbudget", "third-envoy-router")
    assert.is_truthy(pdb, "no PodDisruptionBudget third-envoy-router")
    assert.are.equal(1, pdb.spec.minAvailable)
    local d = S.get(ns3, "deployment", "third-envoy-router")
    -- The budget selects the operator pods: the Deployment's selector and component.
    local want = { ["app.kubernetes.io/component"] = "operator" }
    for k, v in pairs(d.spec.selector.matchLabels) do want[k] = v end
    assert.are.same(want, pdb.spec.selector.matchLabels)
    local tsc = d.spec.template.spec.topologySpreadConstraints
    assert.are.equal(1, #tsc)
    assert.are.same(d.spec.selector.matchLabels, tsc[1].labelSelector.matchLabels)
    local name = ns3 .. ":third-envoy-router"
    assert.is_truthy(cget("clusterrole", name))
    assert.is_truthy(cget("clusterrolebinding", name))
    local op = start_operator(ns3, r3)
    ops[1] = op
    S.eventually(function()
      local _, code = op:http(op.health_port, "/readyz")
      return code == 200
    end, 15, "operator ready; log: " .. op:log_text())
    -- Leader election: the Lease in the release namespace, held under the
    -- pod name the downward API gives (ENVOY_ROUTER_IDENTITY).
    local lease = S.eventually(function()
      local l = S.get(ns3, "lease", "third-envoy-router")
      return l and l.spec.holderIdentity == "third-envoy-router-0" and l
    end, 15, "Lease third-envoy-router held by third-envoy-router-0; log: " .. op.log)
    assert.is_truthy(lease)
    S.pod(ns3, "web-c")
    S.pod_status(ns3, "web-c", { ip = "10.244.3.10", ready = true })
    local route = S.eventually(function() return S.get(ns3, "httproute", "web-c") end, 10)
    assert.are.equal("third-envoy-router-gateway", route.spec.parentRefs[1].name)
    stop_operator(op)
    ops = {}
    must_helm("uninstall " .. r3 .. " -n " .. ns3 .. " --wait --timeout 60s")
    assert.is_nil(cget("clusterrole", name))
    assert.are.equal("", release_objects(ns3, r3))
  end)
end)
