-- spec/e2e/support.lua: what the end-to-end specs share.
--
-- The specs run against the loopback control plane of tools/cluster.sh
-- (started or reused here) and the envoy-router binary named by
-- $ENVOY_ROUTER_BIN (default build/envoy-router), run out of cluster with the
-- admin kubeconfig. No kubelet runs: specs create pods through the API and set
-- their status through the status subresource, as a kubelet would.
--
--   local S = require("spec.e2e.support")
--   local ns = S.namespace("e2e-basic")          -- fresh namespace
--   S.pod(ns, "p1")                              -- labelled pod, Pending
--   S.pod_status(ns, "p1", { ip = "10.0.0.1", ready = true })
--   local op = S.operator({ "--watch-namespace", ns })
--   S.eventually(function() return S.get(ns, "endpointslice", "p1") end)
--   op:stop()

local cjson = require("cjson")
local system = require("system")

local S = {}

local root = os.getenv("ENVOY_ROUTER_ROOT") or "."
S.bin = os.getenv("ENVOY_ROUTER_BIN") or (root .. "/build/envoy-router")
S.kubectl_bin = root .. "/.cache/bin/kubectl"

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
S.quote = sh_quote

-- Runs a shell command; returns stdout, ok, combined output on failure.
function S.sh(cmd, input)
  local tmp_in
  if input then
    tmp_in = os.tmpname()
    local f = assert(io.open(tmp_in, "w"))
    f:write(input)
    f:close()
    cmd = cmd .. " < " .. tmp_in
  end
  local tmp_err = os.tmpname()
  local p = assert(io.popen(cmd .. " 2>" .. tmp_err, "r"))
  local out = p:read("a")
  local ok = p:close() == true
  local f = io.open(tmp_err, "r")
  local err = f and f:read("a") or ""
  if f then f:close() end
  os.remove(tmp_err)
  if tmp_in then os.remove(tmp_in) end
  return out, ok, err
end

-- The cluster: started or reused once per process.
local kubeconfig
function S.kubeconfig()
  if not kubeconfig then
    local out, ok, err = S.sh(root .. "/tools/cluster.sh up")
    assert(ok, "tools/cluster.sh up failed: " .. err)
    kubeconfig = out:match("export KUBECONFIG=(%S+)")
    assert(kubeconfig, "no KUBECONFIG in: " .. out)
  end
  return kubeconfig
end

-- kubectl with the admin kubeconfig. Returns stdout, ok, stderr.
function S.kubectl(args, input)
  return S.sh("KUBECONFIG=" .. sh_quote(S.kubeconfig()) .. " " .. S.kubectl_bin .. " " .. args,
    input)
end

-- kubectl that must succeed.
function S.must(args, input)
  local out, ok, err = S.kubectl(args, input)
  assert(ok, "kubectl " .. args .. " failed: " .. err)
  return out
end

-- Applies one object given as a Lua table (server-side, as a client would).
function S.apply(obj)
  return S.must("apply --server-side --force-conflicts -f -", cjson.encode(obj))
end

-- The object as a table, or nil when it does not exist.
function S.get(ns, kind, name)
  local out, ok = S.kubectl(string.format("get %s %s -n %s -o json", kind, sh_quote(name), ns))
  if not ok then return nil end
  return cjson.decode(out)
end

-- Items of a list.
function S.list(ns, kind, selector)
  local args = string.format("get %s -n %s -o json", kind, ns)
  if selector then args = args .. " -l " .. sh_quote(selector) end
  return cjson.decode(S.must(args)).items
end

-- A fresh, empty namespace (deleted first if a previous run left it).
function S.namespace(name)
  S.kubectl("delete namespace " .. name .. " --wait=true --timeout=60s")
  S.must("create namespace " .. name)
  return name
end

-- Creates a pod (no kubelet: it stays Pending). opts: labels (table,
-- default the envoy-router label), name overrides.
function S.pod(ns, name, opts)
  opts = opts or {}
  local labels = opts.labels or { ["envoy-router/enabled"] = "true" }
  S.apply({
    apiVersion = "v1", kind = "Pod",
    metadata = { name = name, namespace = ns, labels = labels },
    spec = { containers = { { name = "app", image = "example.invalid/app:1" } },
             nodeName = opts.node },
  })
  return S.get(ns, "pod", name)
end

-- Sets a pod's status as a kubelet would: st.ip, st.ready (boolean).
function S.pod_status(ns, name, st)
  local status = {
    phase = "Running",
    conditions = { { type = "Ready", status = st.ready == false and "False" or "True" } },
  }
  if st.ip then
    status.podIP = st.ip
    status.podIPs = { { ip = st.ip } }
  end
  return S.must(string.format("patch pod %s -n %s --subresource=status --type=merge -p %s",
    sh_quote(name), ns, sh_quote(cjson.encode({ status = status }))))
end

function S.sleep(seconds) system.sleep(seconds) end
function S.now() return system.monotime() end

-- Calls fn until it returns a truthy value without raising; returns that
-- value. Raises the last error (or a timeout message) after `timeout` s.
function S.eventually(fn, timeout, what)
  local deadline = S.now() + (timeout or 10)
  local last
  repeat
    local ok, v = pcall(fn)
    if ok and v then return v end
    last = ok and ("condition still false: " .. (what or "")) or v
    S.sleep(0.05)
  until S.now() > deadline
  error(last, 2)
end

-- Asserts fn stays falsy (or raises nothing truthy) for `seconds`.
function S.never(fn, seconds, what)
  local deadline = S.now() + (seconds or 1)
  repeat
    local ok, v = pcall(fn)
    if ok and v then error("unexpectedly true: " .. (what or ""), 2) end
    S.sleep(0.05)
  until S.now() > deadline
end

-- Operator processes ------------------------------------------------------

local Operator = {}
Operator.__index = Operator

-- Starts the binary with `args` (a list) and env (table of extra variables).
-- Metrics and health bind to free ports (port 0), read back from the log.
function S.operator(args, env)
  local log = os.tmpname()
  local parts = { "exec", "env" }
  for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. sh_quote(v) end
  parts[#parts + 1] = sh_quote(S.bin)
  local has = {}
  for _, a in ipairs(args or {}) do has[a:match("^(%-%-[%w-]+)") or a] = true end
  if not has["--kubeconfig"] then
    parts[#parts + 1] = "--kubeconfig " .. sh_quote(S.kubeconfig())
  end
  if not has["--metrics-bind-address"] then parts[#parts + 1] = "--metrics-bind-address 127.0.0.1:0" end
  if not has["--health-probe-bind-address"] then
    parts[#parts + 1] = "--health-probe-bind-address 127.0.0.1:0"
  end
  for _, a in ipairs(args or {}) do parts[#parts + 1] = sh_quote(a) end
  local cmd = table.concat(parts, " ")
  local pid = S.sh("(" .. cmd .. " >" .. log .. " 2>&1 & echo $!)"):match("%d+")
  local op = setmetatable({ pid = tonumber(pid), log = log, cmd = cmd }, Operator)
  op.metrics_port = tonumber(S.eventually(function()
    return op:log_text():match("endpoints=metrics address=%S+ port=(%d+)")
      or op:log_text():match("endpoints=metrics,health address=%S+ port=(%d+)")
  end, 10, "operator serving metrics; log: " .. log))
  op.health_port = tonumber(op:log_text():match("endpoints=health address=%S+ port=(%d+)"))
    or op.metrics_port
  return op
end

-- An operator process started some other way (e.g. with the exact args of a
-- rendered Deployment): fields pid, log, metrics_port, health_port.
function S.adopt(fields)
  return setmetatable(fields, Operator)
end

function Operator:log_text()
  local f = io.open(self.log, "r")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

function Operator:alive()
  local _, ok = S.sh("kill -0 " .. self.pid)
  return ok
end

-- Sends a signal (default TERM) and waits up to `timeout` s for the exit.
-- Returns true when it exited in time.
-- Under `make check` the binary is built with ASan and UBSan: a report in
-- its log fails the spec that stops it.
function Operator:check_sanitizers()
  local log = self:log_text()
  local at = log:find("Sanitizer", 1, true) or log:find("runtime error:", 1, true)
  if at then
    error("sanitizer report in " .. self.log .. ":\n" .. log:sub(at, at + 2000), 3)
  end
end

function Operator:stop(signal, timeout)
  if not self:alive() then
    self:check_sanitizers()
    return true
  end
  S.sh("kill -" .. (signal or "TERM") .. " " .. self.pid)
  local deadline = S.now() + (timeout or 15)
  while S.now() < deadline do
    if not self:alive() then
      self:check_sanitizers()
      return true
    end
    S.sleep(0.05)
  end
  S.sh("kill -KILL " .. self.pid)
  return false
end

-- GET on the health/metrics server: body, HTTP status.
function Operator.http(_, port, path)
  local out = S.sh(string.format("curl -s -w '\\n%%{http_code}' http://127.0.0.1:%d%s", port, path))
  local body, code = out:match("^(.*)\n(%d+)$")
  return body or "", tonumber(code)
end

-- Parsed /metrics: { ["name{labels}"] = value }, with labels as printed.
function Operator:metrics()
  local body = self:http(self.metrics_port, "/metrics")
  local m = {}
  for line in body:gmatch("[^\n]+") do
    if line:sub(1, 1) ~= "#" then
      local k, v = line:match("^(%S+)%s+(%S+)$")
      if k then m[k] = tonumber(v) end
    end
  end
  return m
end

-- Sum of every series of `name` whose labels contain all of `want`
-- ({ method = "POST" }), from `scrape` (a table from metrics()) or a new one.
function Operator:metric(name, want, scrape)
  local total = 0
  for k, v in pairs(scrape or self:metrics()) do
    local n, labels = k:match("^([^{]+){?(.-)}?$")
    if n == name then
      local ok = true
      for lk, lv in pairs(want or {}) do
        if not labels:find(lk .. '="' .. lv .. '"', 1, true) then ok = false end
      end
      if ok then total = total + v end
    end
  end
  return total
end

-- Write requests (POST, PATCH, PUT, DELETE) the operator has sent, from
-- `scrape` (a table from metrics()) or one new scrape.
function Operator:writes(scrape)
  scrape = scrape or self:metrics()
  local n = 0
  for _, m in ipairs({ "POST", "PATCH", "PUT", "DELETE" }) do
    n = n + self:metric("rest_client_requests_total", { method = m }, scrape)
  end
  return n
end

-- Waits until /readyz answers 200 (caches synced).
function Operator:wait_ready(timeout)
  S.eventually(function()
    local _, code = self:http(self.health_port, "/readyz")
    return code == 200
  end, timeout or 15, "operator ready; log: " .. self.log)
end

-- Raw API access -----------------------------------------------------------
-- kubectl costs a process and ~100 ms per call; specs and benchmarks that
-- handle hundreds of pods talk to the API server through one curl process
-- with the cluster's admin token instead.

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The API server's URL and the curl options that authenticate to it.
function S.api_base()
  if not S._api then
    local kc = S.kubeconfig()
    local dir = kc:match("^(.*)/[^/]+$") or "."
    local server = assert((read_file(kc) or ""):match("server:%s*(%S+)"), "no server in " .. kc)
    local token = assert(read_file(dir .. "/admin.token"), "no admin.token beside " .. kc)
    S._api = { server = server, token = token:gsub("%s+$", ""), cacert = dir .. "/pki/ca.crt" }
  end
  return S._api
end

-- curl's config-file syntax: a double-quoted string with \ and " escaped.
local function cq(s)
  return '"' .. tostring(s):gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"'
end

-- Sends requests through one curl process (up to `parallel` at a time).
-- Each request: { method, path, body (table or string), content_type,
-- output (a file for the answer's body; by default it is dropped) }.
-- Returns the list of HTTP status codes (order not guaranteed when parallel).
function S.api_many(reqs, parallel)
  if #reqs == 0 then return {} end
  local api = S.api_base()
  local cfg = os.tmpname()
  local f = assert(io.open(cfg, "w"))
  for i, r in ipairs(reqs) do
    if i > 1 then f:write("next\n") end
    f:write("url = ", cq(api.server .. r.path), "\n")
    f:write("request = ", cq(r.method or "GET"), "\n")
    f:write("cacert = ", cq(api.cacert), "\n")
    f:write("header = ", cq("Authorization: Bearer " .. api.token), "\n")
    if r.body ~= nil then
      local body = type(r.body) == "table" and cjson.encode(r.body) or r.body
      f:write("header = ", cq("Content-Type: " .. (r.content_type or "application/json")), "\n")
      f:write("data-binary = ", cq(body), "\n")
    end
    f:write("output = ", cq(r.output or "/dev/null"), "\n")
    f:write("silent\nwrite-out = \"%{http_code}\\n\"\n")
  end
  f:close()
  local flags = parallel and parallel > 1 and ("--parallel --parallel-max " .. parallel .. " ") or ""
  local out = S.sh("curl " .. flags .. "-K " .. cfg)
  os.remove(cfg)
  local codes = {}
  for c in out:gmatch("%d+") do codes[#codes + 1] = tonumber(c) end
  return codes
end

-- One request; returns the HTTP status code.
function S.api(method, path, body, content_type)
  return S.api_many({ { method = method, path = path, body = body, content_type = content_type } })[1]
end

-- What the original Go operator (chart 0.1.3) left for pod `name` of `ns`:
-- a Service, an EndpointSlice (IPv4, always ready, no targetRef) and an
-- HTTPRoute named after the pod, with the managed-by label and no
-- ownerReference, written by POST as its controller-runtime client did
-- (field manager "manager"). opts: pod_port (8080), gateway ("envoy-router").
function S.go_children(ns, name, ip, opts)
  opts = opts or {}
  local pod_port, gateway = opts.pod_port or 8080, opts.gateway or "envoy-router"
  local labels = { ["app.kubernetes.io/managed-by"] = "envoy-router" }
  local function post(path, obj)
    local code = S.api("POST", path .. "?fieldManager=manager", obj)
    assert(code == 201, "POST " .. path .. ": HTTP " .. tostring(code))
  end
  post("/api/v1/namespaces/" .. ns .. "/services", {
    apiVersion = "v1", kind = "Service",
    metadata = { name = name, namespace = ns, labels = labels },
    spec = { ports = { { name = "http", port = 80, targetPort = pod_port, protocol = "TCP" } } },
  })
  post("/apis/discovery.k8s.io/v1/namespaces/" .. ns .. "/endpointslices", {
    apiVersion = "discovery.k8s.io/v1", kind = "EndpointSlice",
    metadata = { name = name, namespace = ns, labels = {
      ["app.kubernetes.io/managed-by"] = "envoy-router", ["kubernetes.io/service-name"] = name,
    } },
    addressType = "IPv4",
    endpoints = { { addresses = { ip }, conditions = { ready = true } } },
    ports = { { name = "http", port = pod_port, protocol = "TCP" } },
  })
  post("/apis/gateway.networking.k8s.io/v1/namespaces/" .. ns .. "/httproutes", {
    apiVersion = "gateway.networking.k8s.io/v1", kind = "HTTPRoute",
    metadata = { name = name, namespace = ns, labels = labels },
    spec = {
      parentRefs = { { name = gateway } },
      rules = { { matches = { { path = { type = "PathPrefix", value = "/" .. name } } },
                  backendRefs = { { name = name, port = 80 } } } },
    },
  })
end

-- The status body S.pod_status sends, for bulk use.
function S.status_body(st)
  local status = {
    phase = "Running",
    conditions = { { type = "Ready", status = st.ready == false and "False" or "True" } },
  }
  if st.ip then
    status.podIP = st.ip
    status.podIPs = { { ip = st.ip } }
  end
  return { status = status }
end

-- Creates many pods at once (same options as S.pod); raises unless every
-- create answered 201.
function S.pods(ns, names, opts)
  opts = opts or {}
  local reqs = {}
  for _, name in ipairs(names) do
    reqs[#reqs + 1] = { method = "POST", path = "/api/v1/namespaces/" .. ns .. "/pods", body = {
      apiVersion = "v1", kind = "Pod",
      metadata = { name = name, namespace = ns,
                   labels = opts.labels or { ["envoy-router/enabled"] = "true" } },
      spec = { containers = { { name = "app", image = "example.invalid/app:1" } },
               nodeName = opts.node },
    } }
  end
  for _, c in ipairs(S.api_many(reqs, 8)) do assert(c == 201, "create pod: HTTP " .. c) end
end

-- Sets many pods' status: statuses maps pod name -> { ip, ready }.
function S.pods_status(ns, statuses)
  local reqs = {}
  for name, st in pairs(statuses) do
    reqs[#reqs + 1] = { method = "PATCH",
      path = "/api/v1/namespaces/" .. ns .. "/pods/" .. name .. "/status",
      body = S.status_body(st), content_type = "application/merge-patch+json" }
  end
  for _, c in ipairs(S.api_many(reqs, 8)) do assert(c == 200, "pod status: HTTP " .. c) end
end

-- Removes a spec's namespace without waiting. Pods bound to a node would
-- wait for a kubelet that never comes, so every pod goes first, forced.
function S.cleanup(ns)
  S.kubectl("delete pods --all -n " .. ns .. " --grace-period=0 --force --wait=false")
  S.kubectl("delete namespace " .. ns .. " --wait=false")
end

-- Counts the objects of `kind` in `ns` that carry label envoy-router/pod=<pod>
-- by kind ("Service" = 1, ...).
function S.children_of(ns, pod)
  local n = {}
  local items = S.list(ns, "services,endpointslices,httproutes", "envoy-router/pod=" .. pod)
  for _, o in ipairs(items) do n[o.kind] = (n[o.kind] or 0) + 1 end
  return n, items
end

-- Cuts every TCP connection of process `pid` to the API server (ss -K, as
-- a network cut or a load balancer dropping them would). Returns how many.
function S.cut_connections(pid)
  local port = assert(S.api_base().server:match(":(%d+)/?$"), "API port")
  local n = 0
  for line in S.sh("ss -tnpH"):gmatch("[^\n]+") do
    local sport = line:match("127%.0%.0%.1:(%d+)%s+127%.0%.0%.1:" .. port .. "%s")
    if sport and line:find("pid=" .. pid .. ",", 1, true) then
      local _, ok, err = S.sh("ss -K -tn 'dst 127.0.0.1:" .. port .. "' 'sport = :" .. sport .. "'")
      assert(ok, err)
      n = n + 1
    end
  end
  return n
end

-- The operator's queue is empty and nothing is being reconciled (from
-- `scrape`, a table from metrics(), or a new one).
function Operator:idle(scrape)
  local m = scrape or self:metrics()
  return m['workqueue_depth{name="pod"}'] == 0
    and m['controller_runtime_active_workers{controller="pod"}'] == 0
end

-- A kubeconfig file for ServiceAccount `sa` of `ns`: the cluster's server
-- and CA, a fresh token from the TokenRequest API. Returns its path.
function S.sa_kubeconfig(ns, sa)
  local admin = cjson.decode(S.must("config view --raw --minify -o json"))
  local cluster = admin.clusters[1].cluster
  local token = S.must(string.format("create token %s -n %s --duration=1h", sa, ns)):gsub("%s+$", "")
  local kc = {
    apiVersion = "v1", kind = "Config", ["current-context"] = "sa",
    clusters = { { name = "c", cluster = {
      server = cluster.server,
      ["certificate-authority-data"] = cluster["certificate-authority-data"],
    } } },
    users = { { name = "sa", user = { token = token } } },
    contexts = { { name = "sa", context = { cluster = "c", user = "sa", namespace = ns } } },
  }
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(cjson.encode(kc))
  f:close()
  return path
end

-- VmRSS of the operator process in KiB.
function Operator:rss_kib()
  local s = read_file("/proc/" .. self.pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- CPU seconds (user + system) the operator process has used so far.
function Operator:cpu_seconds()
  local s = read_file("/proc/" .. self.pid .. "/stat") or ""
  local f = {}
  for x in s:gsub("^.-%) ", ""):gmatch("%S+") do f[#f + 1] = x end
  local hz = 100   -- USER_HZ on Linux
  return ((tonumber(f[12]) or 0) + (tonumber(f[13]) or 0)) / hz
end

return S
