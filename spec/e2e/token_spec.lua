-- End-to-end: credentials that change under a running operator, and the
-- in-cluster configuration.
--
-- Service-account tokens (`kubectl create token`) stop working when their
-- ServiceAccount is deleted: that stands in for a token that expired or was
-- revoked. The operator reads its bearer token from a file (a kubeconfig's
-- tokenFile, or the in-cluster service-account token) and must pick up a
-- new token written there without a restart.

local S = require("spec.e2e.support")

local ROLE = "envoy-router-e2e-token"

-- What the operator needs (as the chart grants it).
local function ensure_role()
  S.apply({ apiVersion = "rbac.authorization.k8s.io/v1", kind = "ClusterRole",
    metadata = { name = ROLE },
    rules = {
      { apiGroups = { "" }, resources = { "pods" }, verbs = { "get", "list", "watch" } },
      { apiGroups = { "" }, resources = { "services" },
        verbs = { "get", "list", "watch", "create", "patch", "update", "delete" } },
      { apiGroups = { "" }, resources = { "services/finalizers" }, verbs = { "update" } },
      { apiGroups = { "discovery.k8s.io" }, resources = { "endpointslices" },
        verbs = { "get", "list", "watch", "create", "patch", "update", "delete" } },
      { apiGroups = { "gateway.networking.k8s.io" }, resources = { "httproutes" },
        verbs = { "get", "list", "watch", "create", "patch", "update", "delete" } },
      { apiGroups = { "" }, resources = { "events" }, verbs = { "create", "patch" } },
      { apiGroups = { "coordination.k8s.io" }, resources = { "leases" },
        verbs = { "get", "create", "update" } },
    } })
end

-- A ServiceAccount bound to the role; returns a fresh token for it.
local function account(ns, name)
  S.must(string.format("create serviceaccount %s -n %s", name, ns))
  S.apply({ apiVersion = "rbac.authorization.k8s.io/v1", kind = "ClusterRoleBinding",
    metadata = { name = ROLE .. "-" .. ns .. "-" .. name },
    roleRef = { apiGroup = "rbac.authorization.k8s.io", kind = "ClusterRole", name = ROLE },
    subjects = { { kind = "ServiceAccount", name = name, namespace = ns } } })
  return (S.must(string.format("create token %s -n %s --duration=10m", name, ns)):gsub("%s+$", ""))
end

local function drop_account(ns, name)
  S.must(string.format("delete serviceaccount %s -n %s --wait=true", name, ns))
  S.kubectl("delete clusterrolebinding " .. ROLE .. "-" .. ns .. "-" .. name)
end

-- HTTP status of GET /api/v1/namespaces/<ns>/pods with `token`.
local function status_with(token, ns)
  local api = S.api_base()
  local out = S.sh(string.format(
    "curl -s -o /dev/null -w '%%{http_code}' --cacert %s -H %s %s",
    S.quote(api.cacert), S.quote("Authorization: Bearer " .. token),
    S.quote(api.server .. "/api/v1/namespaces/" .. ns .. "/pods")))
  return tonumber(out)
end

-- Waits until the API server refuses `token` (its authentication cache may
-- keep accepting it for a few seconds after the ServiceAccount is gone).
local function wait_revoked(token, ns)
  S.eventually(function() return status_with(token, ns) == 401 end, 30, "token revoked")
end

local function write_file(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))           -- atomic, as a kubelet swaps files
end

local function tmpdir()
  return (S.sh("mktemp -d"):gsub("%s+$", ""))
end

local function has_children(ns, pod)
  local n = S.children_of(ns, pod)
  return n.Service == 1 and n.EndpointSlice == 1 and n.HTTPRoute == 1
end

local ip = 0
local function served(op, ns, pod, timeout)
  ip = ip + 1
  S.pod(ns, pod)
  S.pod_status(ns, pod, { ip = "10.90.0." .. ip, ready = true })
  S.eventually(function() return has_children(ns, pod) end, timeout or 10,
    "children of " .. pod .. "; log: " .. op.log)
  -- Made by this operator, not another one that may watch all namespaces.
  assert.truthy(op:log_text():find("pod=" .. ns .. "/" .. pod .. " verb=create", 1, true))
end

local function unauthorized(op)
  return op:metric("rest_client_requests_total", { code = "401" })
end

describe("a rotating token file (kubeconfig tokenFile)", function()
  local ns, op, dir, token_path

  lazy_setup(function()
    ensure_role()
    ns = S.namespace("e2e-token")
    dir = tmpdir()
    token_path = dir .. "/token"
    write_file(token_path, account(ns, "token-a") .. "\n")
    local api = S.api_base()
    local kc = dir .. "/kubeconfig"
    write_file(kc, table.concat({
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: e2e",
      "  cluster:",
      "    server: " .. api.server,
      "    certificate-authority: " .. api.cacert,
      "users:",
      "- name: rotating",
      "  user:",
      "    tokenFile: " .. token_path,
      "contexts:",
      "- name: e2e",
      "  context:",
      "    cluster: e2e",
      "    user: rotating",
      "    namespace: " .. ns,
      "current-context: e2e",
      "" }, "\n"))
    op = S.operator({ "--kubeconfig", kc, "--watch-namespace", ns })
    op:wait_ready()
  end)
  lazy_teardown(function()
    if op then op:stop() end
    for _, sa in ipairs({ "token-a", "token-b", "token-c" }) do
      S.kubectl("delete clusterrolebinding " .. ROLE .. "-" .. ns .. "-" .. sa)
    end
    if dir then S.sh("rm -rf " .. S.quote(dir)) end
    S.cleanup(ns)
  end)

  it("works with the first token", function()
    served(op, ns, "tok-1")
    assert.equal(0, unauthorized(op))
  end)

  it("a new token written to the file is used once the old one is revoked", function()
    local old = (io.open(token_path):read("a"):gsub("%s+$", ""))
    write_file(token_path, account(ns, "token-b") .. "\n")
    drop_account(ns, "token-a")
    wait_revoked(old, ns)
    served(op, ns, "tok-2")
    -- No 401 that lasts: another pod later, not one more refusal.
    local refused = unauthorized(op)
    served(op, ns, "tok-3")
    assert.equal(refused, unauthorized(op))
    print(string.format("# rotation ahead of revocation: %d requests refused", refused))
    assert.is_true(op:alive())
  end)

  it("recovers when the token is revoked first and replaced later", function()
    local current = (io.open(token_path):read("a"):gsub("%s+$", ""))
    drop_account(ns, "token-b")
    wait_revoked(current, ns)
    local before = unauthorized(op)
    -- The pod's writes are refused now (401), and retried with backoff.
    ip = ip + 1
    S.pod(ns, "tok-4")
    S.pod_status(ns, "tok-4", { ip = "10.90.0." .. ip, ready = true })
    S.eventually(function() return unauthorized(op) > before end, 10, "writes refused")
    assert.is_false(has_children(ns, "tok-4"))
    local t0 = S.now()
    write_file(token_path, account(ns, "token-c") .. "\n")
    S.eventually(function() return has_children(ns, "tok-4") end, 40,
      "children of tok-4 once the token is replaced; log: " .. op.log)
    print(string.format("# revoked token replaced: pod served %.1f s after the new token", S.now() - t0))
    local refused = unauthorized(op)
    served(op, ns, "tok-5")
    assert.equal(refused, unauthorized(op))
    assert.truthy(op:log_text():find("token file re-read", 1, true))
  end)
end)

describe("in-cluster configuration", function()
  local ns, root, sa_dir
  local ops = {}

  -- The kubelet's layout: token, ca.crt and namespace are links into a
  -- timestamped directory behind the ..data link, which is swapped at once.
  local generation = 0
  local function project(files)
    generation = generation + 1
    local gen = "..gen" .. generation
    S.sh("mkdir -p " .. S.quote(sa_dir .. "/" .. gen))
    for name, text in pairs(files) do
      local f = assert(io.open(sa_dir .. "/" .. gen .. "/" .. name, "w"))
      f:write(text)
      f:close()
      S.sh(string.format("ln -sfn ..data/%s %s", name, S.quote(sa_dir .. "/" .. name)))
    end
    S.sh(string.format("ln -sfn %s %s && mv -T %s %s", gen, S.quote(sa_dir .. "/..data_tmp"),
      S.quote(sa_dir .. "/..data_tmp"), S.quote(sa_dir .. "/..data")))
  end

  local function in_cluster(args)
    local api = S.api_base()
    local host, port = api.server:match("^https://([^:/]+):(%d+)")
    local full = { "--kubeconfig=" }       -- not $KUBECONFIG: in-cluster
    for _, a in ipairs(args) do full[#full + 1] = a end
    local op = S.operator(full, { KUBERNETES_SERVICE_HOST = host, KUBERNETES_SERVICE_PORT = port,
      ENVOY_ROUTER_IN_CLUSTER_ROOT = root, KUBECONFIG = "" })
    ops[#ops + 1] = op
    return op
  end

  local function read(path)
    local f = assert(io.open(path, "r"))
    local s = f:read("a")
    f:close()
    return s
  end

  lazy_setup(function()
    ensure_role()
    ns = S.namespace("e2e-incluster")
    root = tmpdir()
    sa_dir = root .. "/var/run/secrets/kubernetes.io/serviceaccount"
    S.sh("mkdir -p " .. S.quote(sa_dir))
    project({ token = account(ns, "incluster-a"), namespace = ns,
              ["ca.crt"] = read(S.api_base().cacert) })
  end)
  lazy_teardown(function()
    for _, op in ipairs(ops) do op:stop() end
    for _, sa in ipairs({ "incluster-a", "incluster-b" }) do
      S.kubectl("delete clusterrolebinding " .. ROLE .. "-" .. ns .. "-" .. sa)
    end
    if root then S.sh("rm -rf " .. S.quote(root)) end
    S.cleanup(ns)
  end)

  it("uses the service account: server from the environment, CA, token, namespace", function()
    local op = in_cluster({ "--watch-namespace", ns, "--leader-elect", "--identity", "in-pod" })
    op:wait_ready()
    assert.truthy(op:log_text():find("server=" .. S.api_base().server, 1, true))
    served(op, ns, "ic-1")
    -- The Lease went to the namespace read from the service-account files.
    local lease = S.eventually(function() return S.get(ns, "lease", "envoy-router") end, 10,
      "Lease in " .. ns)
    assert.equal("in-pod", lease.spec.holderIdentity)
    assert.equal(0, unauthorized(op))
  end)

  it("follows the projected token as the kubelet rotates it", function()
    local op = ops[1]
    local old = read(sa_dir .. "/token")
    project({ token = account(ns, "incluster-b"), namespace = ns,
              ["ca.crt"] = read(S.api_base().cacert) })
    drop_account(ns, "incluster-a")
    wait_revoked(old, ns)
    served(op, ns, "ic-2")
    local refused = unauthorized(op)
    served(op, ns, "ic-3")
    assert.equal(refused, unauthorized(op))
  end)

  it("verifies the API server against ca.crt", function()
    local other = tmpdir()
    S.sh(string.format("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/k -out %s/c "
      .. "-days 1 -subj /CN=not-the-cluster-ca 2>/dev/null", other, other))
    local saved = read(sa_dir .. "/ca.crt")
    project({ token = read(sa_dir .. "/token"), namespace = ns, ["ca.crt"] = read(other .. "/c") })
    local op = in_cluster({ "--watch-namespace", ns })
    S.sh("rm -rf " .. S.quote(other))
    project({ token = read(sa_dir .. "/token"), namespace = ns, ["ca.crt"] = saved })
    S.never(function()
      local _, code = op:http(op.health_port, "/readyz")
      return code == 200
    end, 3, "ready against a server its CA does not vouch for")
    assert.truthy(op:log_text():lower():find("certificate", 1, true), op.log)
  end)
end)
