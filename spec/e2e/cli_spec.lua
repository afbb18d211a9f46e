-- `envoy-router render` and `envoy-router check`: what users run in CI to
-- test their scripts without a cluster (no API server is needed here).
local cjson = require("cjson")
local S = require("spec.e2e.support")

-- Under `timeout`: a script that hangs the command is a failure, not a hung suite.
local function run(args)
  local out, ok, err = S.sh("timeout 60 " .. S.quote(S.bin) .. " " .. args)
  return out, ok, err
end

local function tmpdir(files)
  local dir = S.sh("mktemp -d"):gsub("%s+$", "")
  for name, text in pairs(files or {}) do
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
  end
  return dir
end

local POD_YAML = [[
apiVersion: v1
kind: Pod
metadata:
  name: notebook-7
  namespace: team-a
  uid: 6f1c1f3e-0000-4000-8000-000000000007
  labels:
    envoy-router/enabled: "true"
spec:
  nodeName: node-3
  containers:
  - name: app
    image: example/app
    ports:
    - containerPort: 8080
status:
  phase: Running
  podIP: 10.1.2.7
  podIPs:
  - ip: 10.1.2.7
  conditions:
  - type: Ready
    status: "True"
]]

describe("envoy-router render", function()
  local dir
  before_each(function() dir = tmpdir({ ["pod.yaml"] = POD_YAML }) end)
  after_each(function() S.sh("rm -rf " .. S.quote(dir)) end)

  it("prints the stamped children of a YAML pod", function()
    local out, ok, err = run("render --pod " .. S.quote(dir .. "/pod.yaml"))
    assert.is_true(ok, err)
    local children = cjson.decode(out)
    assert.are.equal(3, #children)
    local by_kind = {}
    for _, c in ipairs(children) do by_kind[c.kind] = c end
    local svc, es, route = by_kind.Service, by_kind.EndpointSlice, by_kind.HTTPRoute
    assert.are.equal("notebook-7", svc.metadata.name)
    assert.are.equal("team-a", svc.metadata.namespace)
    assert.are.equal("envoy-router", svc.metadata.labels["app.kubernetes.io/managed-by"])
    assert.are.equal("notebook-7", svc.metadata.labels["envoy-router/pod"])
    local ref = svc.metadata.ownerReferences[1]
    assert.are.same({ apiVersion = "v1", kind = "Pod", name = "notebook-7",
      uid = "6f1c1f3e-0000-4000-8000-000000000007", controller = true,
      blockOwnerDeletion = false }, ref)
    assert.are.equal("10.1.2.7", es.endpoints[1].addresses[1])
    assert.are.equal("node-3", es.endpoints[1].nodeName)
    assert.are.equal("/notebook-7", route.spec.rules[1].matches[1].path.value)
  end)

  it("takes JSON pods and the config flags", function()
    local yaml_out = run("render --pod " .. S.quote(dir .. "/pod.yaml"))
    local pod = {
      metadata = { name = "p", namespace = "n", uid = "u" },
      status = { podIP = "fd00::9", conditions = { { type = "Ready", status = "False" } } },
    }
    local f = assert(io.open(dir .. "/pod.json", "w"))
    f:write(cjson.encode(pod))
    f:close()
    local out, ok, err = run("render --pod " .. S.quote(dir .. "/pod.json")
      .. " --service-port 8000 --pod-port 9000 --gateway-name gw2")
    assert.is_true(ok, err)
    assert.truthy(yaml_out:find("notebook-7", 1, true))
    local by_kind = {}
    for _, c in ipairs(cjson.decode(out)) do by_kind[c.kind] = c end
    assert.are.equal(8000, by_kind.Service.spec.ports[1].port)
    assert.are.equal(9000, by_kind.Service.spec.ports[1].targetPort)
    assert.are.equal(9000, by_kind.EndpointSlice.ports[1].port)
    assert.are.equal("IPv6", by_kind.EndpointSlice.addressType)
    assert.is_false(by_kind.EndpointSlice.endpoints[1].conditions.ready)
    assert.are.equal("gw2", by_kind.HTTPRoute.spec.parentRefs[1].name)
  end)

  it("fails clearly on a missing or malformed pod file", function()
    local _, ok, err = run("render --pod /nonexistent.yaml")
    assert.is_false(ok)
    assert.truthy(err:find("cannot read /nonexistent.yaml", 1, true), err)
    local bad = tmpdir({ ["bad.yaml"] = "metadata:\n  name: [unclosed\n" })
    _, ok, err = run("render --pod " .. S.quote(bad .. "/bad.yaml"))
    assert.is_false(ok)
    assert.truthy(err:find("line", 1, true), err)
    S.sh("rm -rf " .. S.quote(bad))
    _, ok = run("render")
    assert.is_false(ok)
  end)

  it("uses a scripts dir and reports its errors with file and line", function()
    local scripts = tmpdir({ ["router.lua"] = "return {\n selector = 'a=b',\n children = function(pod)\n"
      .. "  error('no route for ' .. pod.metadata.name)\n end }" })
    local _, ok, err = run("render --pod " .. S.quote(dir .. "/pod.yaml") .. " --scripts-dir " .. S.quote(scripts))
    assert.is_false(ok)
    assert.truthy(err:find("router.lua:4: no route for notebook-7", 1, true), err)
    S.sh("rm -rf " .. S.quote(scripts))
  end)
end)

describe("pod annotations in render", function()
  local pod = cjson.encode({ apiVersion = "v1", kind = "Pod",
    metadata = { name = "nb-1", namespace = "ns", uid = "u-1",
                 annotations = { ["example.com/team"] = "data" } },
    spec = { nodeName = "n1", containers = { { name = "app" } } },
    status = { podIP = "10.1.2.3", conditions = { { type = "Ready", status = "True" } } } })
  local function router(declared)
    return "local base = require('builtin.router')\n"
      .. "return { selector = 'a=b', " .. (declared and "pod_annotations = true, " or "")
      .. "children = function(pod, config)\n"
      .. "  local list = assert(base.children(pod, config))\n"
      .. "  list[1].metadata.annotations = { team = pod.metadata.annotations['example.com/team'] }\n"
      .. "  return list\n end }"
  end

  it("reach scripts that declare pod_annotations, and fail loudly for those that do not", function()
    local scripts = tmpdir({ ["router.lua"] = router(true), ["pod.json"] = pod })
    local out, ok, err = run("render --pod " .. S.quote(scripts .. "/pod.json")
      .. " --scripts-dir " .. S.quote(scripts))
    assert.is_true(ok, err)
    assert.equal("data", cjson.decode(out)[1].metadata.annotations.team, out)
    S.sh("rm -rf " .. S.quote(scripts))
    scripts = tmpdir({ ["router.lua"] = router(false), ["pod.json"] = pod })
    local _
    _, ok, err = run("render --pod " .. S.quote(scripts .. "/pod.json")
      .. " --scripts-dir " .. S.quote(scripts))
    assert.is_false(ok)
    assert.truthy(err:find("pod_annotations = true", 1, true), err)
    S.sh("rm -rf " .. S.quote(scripts))
  end)
end)

describe("envoy-router check", function()
  it("passes on the built-in scripts", function()
    local out, ok, err = run("check")
    assert.is_true(ok, err)
    assert.truthy(out:find("ok: scripts from built-in", 1, true), out)
  end)

  it("passes on a scripts dir that wraps a default template", function()
    local scripts = tmpdir({ ["templates.service.lua"] = [[
local default = require("builtin.templates.service")
return function(pod, cfg, names)
  local svc = default(pod, cfg, names)
  svc.metadata.annotations = { team = "a" }
  return svc
end]] })
    local out, ok, err = run("check --scripts-dir " .. S.quote(scripts))
    assert.is_true(ok, err)
    assert.truthy(out:find("fixture pods rendered", 1, true))
    assert.truthy(out:find("module templates.service: scripts dir (" .. scripts
      .. "/templates.service.lua)", 1, true), out)
    assert.truthy(out:find("module router: built-in (scripts/router.lua)", 1, true), out)
    assert.falsy(out:find("note: no module came from", 1, true), out)
    S.sh("rm -rf " .. S.quote(scripts))
  end)

  it("fails on a scripts dir that does not exist", function()
    local out, ok, err = run("check --scripts-dir /nonexistent/envoy-router-scripts")
    assert.is_false(ok)
    assert.are.equal("", out)
    assert.truthy(err:find("/nonexistent/envoy-router-scripts: No such file or directory", 1, true),
      err)
  end)

  it("says so when an empty scripts dir leaves every module built-in", function()
    local scripts = tmpdir({})
    local out, ok, err = run("check --scripts-dir " .. S.quote(scripts))
    assert.is_true(ok, err)
    assert.truthy(out:find("note: no module came from " .. scripts, 1, true), out)
    assert.truthy(out:find("module templates.httproute: built-in", 1, true), out)
    S.sh("rm -rf " .. S.quote(scripts))
  end)

  local bad = {
    { "a syntax error", "return {", "router.lua:1:" },
    { "a missing selector", "return { children = function() return {} end }", "selector" },
    { "an invalid child", "return { selector = 'a=b', children = function() return "
      .. "{ { apiVersion = 'v1', kind = 'Secret', metadata = { name = 'x' } } } end }", "Secret" },
    { "an endless loop", "return { selector = 'a=b', children = function() while true do end end }",
      "instruction budget" },
    { "a selector the API server would refuse", "return { selector = 'app in web', "
      .. "children = function() return {} end }", "label selector \"app in web\": expected '('" },
    -- These three hung `check` or ran it out of memory before the host bounded them.
    { "a finalizer", "setmetatable({}, { __gc = function() while true do end end }) "
      .. "return { selector = 'a=b', children = function() return {} end }", "__gc" },
    { "a backtracking pattern", "return { selector = 'a=b', children = function() "
      .. "return { string.find(string.rep('a', 3000), '(.-)(.-)(.-)(.-)b') } end }", "pattern" },
    { "output that nests a table in itself", "return { selector = 'a=b', children = function() "
      .. "local t = {} for _ = 1, 40 do t = { t, t } end return { t } end }", "too large" },
  }
  for _, case in ipairs(bad) do
    it("fails with a clear message on " .. case[1], function()
      local scripts = tmpdir({ ["router.lua"] = case[2] })
      local _, ok, err = run("check --scripts-dir " .. S.quote(scripts))
      assert.is_false(ok)
      assert.truthy(err:find(case[3], 1, true), err)
      S.sh("rm -rf " .. S.quote(scripts))
    end)
  end

  -- The host's invariants: whoever edits the scripts cannot widen what the
  -- public Gateway reaches. Each case edits the default children.
  local function edited(kind, edit)
    return "local base = require('builtin.router') "
      .. "return { selector = base.selector, children = function(pod, config) "
      .. "local list, why = base.children(pod, config) if not list then return list, why end "
      .. "for _, c in ipairs(list) do if c.kind == '" .. kind .. "' then " .. edit .. " end end "
      .. "return list end }"
  end
  local refused = {
    { "a LoadBalancer Service", edited("Service", "c.spec.type = 'LoadBalancer'"),
      "type LoadBalancer" },
    { "a NodePort", edited("Service", "c.spec.type = 'NodePort'"), "type NodePort" },
    { "externalIPs", edited("Service", "c.spec.externalIPs = { '203.0.113.9' }"),
      "sets spec.externalIPs" },
    { "an ExternalName", edited("Service", "c.spec.type = nil c.spec.externalName = 'x.example'"),
      "sets spec.externalName" },
    { "a Service selector", edited("Service", "c.spec.selector = { app = 'db' }"),
      "sets spec.selector" },
    { "an endpoint at another address",
      edited("EndpointSlice", "c.endpoints[1].addresses = { '169.254.169.254' }"),
      "169.254.169.254, which is not an IP of pod" },
    { "an endpoint for another pod", edited("EndpointSlice", "c.endpoints[1].targetRef.name = 'x'"),
      "targetRef is not the pod" },
    { "a slice for someone else's Service",
      edited("EndpointSlice", "c.metadata.labels['kubernetes.io/service-name'] = 'payments'"),
      "Service payments, which is not one of this pod's children" },
    { "a route on another Gateway", edited("HTTPRoute", "c.spec.parentRefs[1].name = 'internal'"),
      "routes attach only to Gateway" },
    { "a route on a Gateway in another namespace",
      edited("HTTPRoute", "c.spec.parentRefs[1].namespace = 'kube-system'"),
      "routes attach only to Gateway" },
    { "a route to another Service",
      edited("HTTPRoute", "c.spec.rules[1].backendRefs[1].name = 'payments'"),
      "sends traffic to payments" },
  }
  for _, case in ipairs(refused) do
    it("refuses " .. case[1] .. " (check and render)", function()
      local scripts = tmpdir({ ["router.lua"] = case[2], ["pod.yaml"] = POD_YAML })
      local _, ok, err = run("check --scripts-dir " .. S.quote(scripts))
      assert.is_false(ok)
      assert.truthy(err:find(case[3], 1, true), err)
      local out, rok, rerr = run("render --scripts-dir " .. S.quote(scripts) .. " --pod "
        .. S.quote(scripts .. "/pod.yaml"))
      assert.is_false(rok, out)
      assert.truthy(rerr:find(case[3], 1, true), rerr)
      S.sh("rm -rf " .. S.quote(scripts))
    end)
  end

  it("accepts the default children edited within the invariants", function()
    local scripts = tmpdir({ ["router.lua"] = edited("Service", "c.spec.clusterIP = nil "
      .. "c.spec.type = 'ClusterIP' c.metadata.annotations = { team = 'a' }") })
    local out, ok, err = run("check --scripts-dir " .. S.quote(scripts))
    assert.is_true(ok, err)
    assert.truthy(out:find("fixture pods rendered", 1, true), out)
    S.sh("rm -rf " .. S.quote(scripts))
  end)
end)
