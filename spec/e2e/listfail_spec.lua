-- End-to-end: a watch whose list keeps being refused makes the operator
-- unready (its cache is going stale), with the reason on /readyz and the
-- envoy_router_watch_failing gauge, and ready again once it lists.
--
-- The refusal is real: the operator runs with a ServiceAccount token whose
-- ClusterRole loses "list pods" while it runs; a script reload with a new
-- selector then makes the pod watch relist, which the API server answers
-- with 403 until the permission comes back.
local S = require("spec.e2e.support")

local ROLE = "envoy-router-e2e-listfail"

local function role(with_pods)
  local rules = {
    { apiGroups = { "" }, resources = { "services" },
      verbs = { "get", "list", "watch", "create", "patch", "update", "delete" } },
    { apiGroups = { "" }, resources = { "services/finalizers" }, verbs = { "update" } },
    { apiGroups = { "discovery.k8s.io" }, resources = { "endpointslices" },
      verbs = { "get", "list", "watch", "create", "patch", "update", "delete" } },
    { apiGroups = { "gateway.networking.k8s.io" }, resources = { "httproutes" },
      verbs = { "get", "list", "watch", "create", "patch", "update", "delete" } },
    { apiGroups = { "" }, resources = { "events" }, verbs = { "create", "patch" } },
  }
  if with_pods then
    rules[#rules + 1] = { apiGroups = { "" }, resources = { "pods" },
                          verbs = { "get", "list", "watch" } }
  end
  S.apply({ apiVersion = "rbac.authorization.k8s.io/v1", kind = "ClusterRole",
    metadata = { name = ROLE }, rules = rules })
end

local function write_file(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

local function router(selector)
  return "local base = require('builtin.router')\n"
    .. "return { selector = " .. string.format("%q", selector) .. ", children = base.children }\n"
end

describe("a watch that cannot list", function()
  local ns, dir, op

  lazy_setup(function()
    role(true)
    ns = S.namespace("e2e-listfail")
    dir = (S.sh("mktemp -d"):gsub("%s+$", ""))
    S.must(string.format("create serviceaccount op -n %s", ns))
    S.apply({ apiVersion = "rbac.authorization.k8s.io/v1", kind = "ClusterRoleBinding",
      metadata = { name = ROLE .. "-" .. ns },
      roleRef = { apiGroup = "rbac.authorization.k8s.io", kind = "ClusterRole", name = ROLE },
      subjects = { { kind = "ServiceAccount", name = "op", namespace = ns } } })
    local token = (S.must(string.format("create token op -n %s --duration=30m", ns)):gsub("%s+$", ""))
    write_file(dir .. "/token", token .. "\n")
    local api = S.api_base()
    write_file(dir .. "/kubeconfig", table.concat({
      "apiVersion: v1", "kind: Config",
      "clusters:", "- name: e2e", "  cluster:", "    server: " .. api.server,
      "    certificate-authority: " .. api.cacert,
      "users:", "- name: op", "  user:", "    tokenFile: " .. dir .. "/token",
      "contexts:", "- name: e2e", "  context:", "    cluster: e2e", "    user: op",
      "current-context: e2e", "" }, "\n"))
    S.sh("mkdir " .. S.quote(dir .. "/scripts"))
    write_file(dir .. "/scripts/router.lua", router("envoy-router/enabled=true"))
    op = S.operator({ "--kubeconfig", dir .. "/kubeconfig", "--watch-namespace", ns,
                      "--scripts-dir", dir .. "/scripts" })
    op:wait_ready()
  end)

  lazy_teardown(function()
    if op then op:stop() end
    S.kubectl("delete clusterrolebinding " .. ROLE .. "-" .. ns)
    S.kubectl("delete clusterrole " .. ROLE)
    if dir then S.sh("rm -rf " .. S.quote(dir)) end
    if ns then S.cleanup(ns) end
  end)

  it("turns /readyz 503 with the reason and sets the gauge, then recovers", function()
    local _, code = op:http(op.health_port, "/readyz")
    assert.are.equal(200, code)
    assert.are.equal(0, op:metric("envoy_router_watch_failing", { resource = "pods" }) or 0)
    role(false)
    -- Wait until the API server enforces the narrower role.
    S.eventually(function()
      local out = S.kubectl(string.format("auth can-i list pods -n %s --as=system:serviceaccount:%s:op",
        ns, ns))
      return out:match("^no") ~= nil
    end, 30, "pods permission gone")
    local t0 = S.now()
    write_file(dir .. "/scripts/router.lua", router("envoy-router/enabled=true,tier!=db"))
    local body
    S.eventually(function()
      local b, c = op:http(op.health_port, "/readyz")
      body = b
      return c == 503
    end, 60, "/readyz 503 after repeated list failures")
    print(string.format("# list refused -> /readyz 503 in %.1f s: %s", S.now() - t0, body))
    assert.truthy(body:find("pods: list failed", 1, true), body)
    assert.truthy(body:find("HTTP 403", 1, true), body)
    assert.are.equal(1, op:metric("envoy_router_watch_failing", { resource = "pods" }))
    assert.is_true(op:alive())
    role(true)
    S.eventually(function()
      local _, c = op:http(op.health_port, "/readyz")
      return c == 200
    end, 60, "/readyz 200 once the pods list again")
    assert.are.equal(0, op:metric("envoy_router_watch_failing", { resource = "pods" }))
  end)
end)
