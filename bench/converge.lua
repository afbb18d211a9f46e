-- luacheck: std lua54
-- bench/converge.lua: memory with 1,000 and 10,000 managed pods against the
-- same binary idle, and the time to write every child of 1,000 pods made
-- ready at once against a minimal client writing the same 3,000 objects.
--
--   make build && lua5.4 bench/converge.lua [PODS] [MORE]   (from the checkout root)
--
-- Not part of `make test` (10,000 pods take a few minutes on two cores).
-- Against the loopback control plane of tools/cluster.sh:
-- 1. floor RSS: the operator on an empty namespace, caches synced;
-- 2. PODS (1,000) labelled pods with IPs and Ready, created while no
--    operator runs; the operator starts; time until it has written all
--    3 x PODS children and its queue is empty; RSS;
-- 3. floor times, each a bare client (one curl process, 16 requests at a
--    time: the operator's --max-concurrent-writes) writing the same 3 x PODS
--    objects into a namespace of its own: by create (POST); by server-side
--    apply in pod order without owners (the "apply floor"); by the
--    operator's protocol (pods of the same names beside them, so the owners
--    are real): 3 writes in 2 rounds, the route owned by the pod and,
--    blocking, by the Service; and that again while a watch on each of
--    the three kinds follows it (as the operator's watches do);
-- 4. MORE (9,000) more pods; RSS once their 3 x MORE children are written
--    (10,000 managed pods in all).
-- All in one run, so the ratios compare like with like. The namespaces it
-- deletes at the end keep the cluster's garbage collector busy for minutes
-- (kube-controller-manager's client is limited to 20 requests/s): start each
-- run on a fresh cluster (`make cluster-down` first).

package.path = "./bench/?.lua;./?.lua;" .. package.path
local S = require("spec.e2e.support")

local N = tonumber(arg[1]) or 1000
local MORE = tonumber(arg[2]) or 9000
local ns, floor_ns, empty_ns = "bench-cv", "bench-cv-floor", "bench-cv-empty"
local apply_ns = "bench-cv-apply"
local proto_ns, watched_ns = "bench-cv-proto", "bench-cv-watched"

local function names(from, to)
  local out, st = {}, {}
  for i = from, to do
    local n = string.format("cv-%05d", i)
    out[#out + 1] = n
    st[n] = { ip = string.format("10.%d.%d.%d", 100 + i // 62500, (i // 250) % 250, i % 250 + 1),
              ready = true }
  end
  return out, st
end

-- Pods in batches (one curl each), then their status (none without statuses).
local function make_pods(list, statuses, target_ns)
  for i = 1, #list, 1000 do
    local batch, st = {}, {}
    for j = i, math.min(i + 999, #list) do
      batch[#batch + 1] = list[j]
      st[list[j]] = statuses and statuses[list[j]]
    end
    S.pods(target_ns or ns, batch)
    -- A status PATCH is idempotent: on a loaded machine, send the batch again
    -- rather than lose the run to one dropped connection.
    if statuses and not pcall(S.pods_status, ns, st) then S.pods_status(ns, st) end
  end
end

-- The three objects a pod gets (as the built-in templates make them).
local function objects(target_ns, name, ip)
  local labels = { ["app.kubernetes.io/managed-by"] = "bench", ["envoy-router/pod"] = name }
  return {
    { path = "/api/v1/namespaces/" .. target_ns .. "/services", body = {
      apiVersion = "v1", kind = "Service",
      metadata = { name = name, namespace = target_ns, labels = labels },
      spec = { clusterIP = "None",
               ports = { { name = "http", port = 80, targetPort = 8080, protocol = "TCP" } } } } },
    { path = "/apis/discovery.k8s.io/v1/namespaces/" .. target_ns .. "/endpointslices", body = {
      apiVersion = "discovery.k8s.io/v1", kind = "EndpointSlice",
      metadata = { name = name, namespace = target_ns, labels = {
        ["kubernetes.io/service-name"] = name, ["app.kubernetes.io/managed-by"] = "bench" } },
      addressType = "IPv4",
      endpoints = { { addresses = { ip }, conditions = { ready = true, serving = true,
                                                         terminating = false } } },
      ports = { { name = "http", port = 8080, protocol = "TCP" } } } },
    { path = "/apis/gateway.networking.k8s.io/v1/namespaces/" .. target_ns .. "/httproutes", body = {
      apiVersion = "gateway.networking.k8s.io/v1", kind = "HTTPRoute",
      metadata = { name = name, namespace = target_ns, labels = labels },
      spec = { parentRefs = { { name = "envoy-router" } },
               rules = { { matches = { { path = { type = "PathPrefix", value = "/" .. name } } },
                           backendRefs = { { name = name, port = 80 } } } } } } },
  }
end

local cjson = require("cjson")
-- lua-cjson escapes "/" as "\/", which is JSON but not YAML.
local function yaml(v) return (cjson.encode(v):gsub("\\/", "/")) end

local function apply_req(o, name)
  return { method = "PATCH", path = o.path .. "/" .. name .. "?fieldManager=bench&force=true",
           body = yaml(o.body), content_type = "application/apply-patch+yaml" }
end

-- Seconds a bare client takes to write the children of `list` by the
-- operator's protocol, round after round (each round 16 requests at a
-- time, as the operator's --max-concurrent-writes), into `pns`, where pods
-- of the same names exist: ownerReferences must name live pods of the same
-- namespace, or the garbage collector deletes the objects. Every object
-- names its pod as controller, as the operator's do: the Service (with the
-- finalizer foregroundDeletion), then the EndpointSlice and the HTTPRoute
-- together, the route naming the Service as a blocking owner: 3 writes in
-- 2 rounds. The list that reads the Services' uids is not timed (the
-- operator has them from its answers).
local function protocol_client(pns, list, statuses)
  local uid, service_uid = {}, {}
  for _, p in ipairs(S.list(pns, "pods")) do uid[p.metadata.name] = p.metadata.uid end
  local took, each = 0, {}
  for i, kinds in ipairs({ { Service = true }, { EndpointSlice = true, HTTPRoute = true } }) do
    if i == 2 then
      for _, o in ipairs(S.list(pns, "services")) do service_uid[o.metadata.name] = o.metadata.uid end
    end
    local reqs = {}
    for _, name in ipairs(list) do
      for _, o in ipairs(objects(pns, name, statuses[name].ip)) do
        local kind = o.body.kind
        if kinds[kind] then
          local md = o.body.metadata
          md.ownerReferences = { { apiVersion = "v1", kind = "Pod", name = name, uid = uid[name],
                                   controller = true, blockOwnerDeletion = false } }
          if kind == "Service" then md.finalizers = { "foregroundDeletion" } end
          if kind == "HTTPRoute" then
            md.ownerReferences[2] = { apiVersion = "v1", kind = "Service", name = name,
                                      uid = service_uid[name], controller = false,
                                      blockOwnerDeletion = true }
          end
          reqs[#reqs + 1] = apply_req(o, name)
        end
      end
    end
    local t = S.now()
    local codes = S.api_many(reqs, 16)
    each[i] = string.format("%.2f", S.now() - t)
    took = took + (S.now() - t)
    for _, c in ipairs(codes) do assert(c == 201 or c == 200, "protocol client answered " .. c) end
  end
  return took, table.concat(each, " + ")
end

-- Watches of the three child kinds in `pns` (curl processes, output
-- dropped), as any controller keeps: the API server then encodes each
-- write once more, for the watch. Returns a function that stops them.
local function watch_children(pns)
  local api = S.api_base()
  local pids = {}
  for _, path in ipairs({ "/api/v1/namespaces/%s/services",
                          "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices",
                          "/apis/gateway.networking.k8s.io/v1/namespaces/%s/httproutes" }) do
    local url = api.server .. string.format(path, pns) .. "?watch=1&timeoutSeconds=600"
    pids[#pids + 1] = S.sh(string.format("(curl -sN --cacert %s -H %s %s >/dev/null 2>&1 & echo $!)",
      S.quote(api.cacert), S.quote("Authorization: Bearer " .. api.token), S.quote(url))):match("%d+")
  end
  S.sleep(0.5)
  return function()
    for _, pid in ipairs(pids) do S.sh("kill " .. pid) end
  end
end

-- From the operator's log: seconds from its first line to "caches synced",
-- and from there to the last write it sent.
local function phases(op)
  local function at(line)
    local h, m, sec = line:match("time=%d+%-%d+%-%d+T(%d+):(%d+):([%d.]+)Z")
    return h and (tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(sec))
  end
  local first, synced, last
  for line in op:log_text():gmatch("[^\n]+") do
    local t = at(line)
    if t then
      first = first or t
      if not synced and line:find("caches synced", 1, true) then synced = t end
      if line:find("reconcile: writing", 1, true) then last = t end
    end
  end
  return (synced or 0) - (first or 0), (last or 0) - (synced or 0)
end

local function count_children(target_ns)
  local n = 0
  for _, kind in ipairs({ "services", "endpointslices", "httproutes" }) do
    n = n + #S.list(target_ns, kind, "app.kubernetes.io/managed-by=envoy-router")
  end
  return n
end

local function wait_written(op, want, timeout)
  S.eventually(function()
    return op:writes() >= want and op:idle()
  end, timeout, want .. " writes and an empty queue; log " .. op.log)
end

local function run()
  local ops = {}
  local ok, err = pcall(function()
    S.namespace(empty_ns)
    S.namespace(floor_ns)
    S.namespace(apply_ns)
    S.namespace(proto_ns)
    S.namespace(watched_ns)
    S.namespace(ns)

    local idle = S.operator({ "--watch-namespace", empty_ns })
    ops[#ops + 1] = idle
    idle:wait_ready()
    S.sleep(2)
    local floor_rss = idle:rss_kib()
    idle:stop()
    local function say(...) print(string.format(...)); io.stdout:flush() end
    local function last_trim(o)
      local line
      for l in o:log_text():gmatch("[^\n]+") do
        if l:find("core: trimmed", 1, true) then line = l end
      end
      if line then say("  %s", line) end
    end
    say("# %s, kube-apiserver on loopback, 2 cores", os.date("!%Y-%m-%dT%H:%M:%SZ"))
    say("idle RSS (same binary, empty namespace): %.1f MiB", floor_rss / 1024)

    local first, st1 = names(1, N)
    make_pods(first, st1)
    local t = S.now()
    -- BENCH_LOG_LEVEL=debug: the operator logs its Lua heap and pool after
    -- each trim, and the last such line is printed with each RSS.
    local op_args = { "--watch-namespace", ns }
    if os.getenv("BENCH_LOG_LEVEL") then
      op_args[#op_args + 1] = "--log-level=" .. os.getenv("BENCH_LOG_LEVEL")
    end
    local op = S.operator(op_args)
    ops[#ops + 1] = op
    wait_written(op, 3 * N, 600)
    local took = S.now() - t
    local writes1 = op:writes()
    local reconciles1 = op:metric("controller_runtime_reconcile_total")
    assert(count_children(ns) == 3 * N, "children after the first start")
    S.sleep(2)
    local rss1 = op:rss_kib()

    -- the floor: the same 3 x N objects from one client
    local reqs = {}
    for _, name in ipairs(first) do
      for _, o in ipairs(objects(floor_ns, name, st1[name].ip)) do
        reqs[#reqs + 1] = { method = "POST", path = o.path, body = o.body }
      end
    end
    t = S.now()
    local codes = S.api_many(reqs, 16)
    local floor_took = S.now() - t
    local created = 0
    for _, c in ipairs(codes) do if c == 201 then created = created + 1 end end
    assert(created == 3 * N, "floor client created " .. created)

    -- The same 3 x N objects by server-side apply, 16 at a time, in pod
    -- order, without owners: the apply floor.
    local applies = {}
    for _, name in ipairs(first) do
      for _, o in ipairs(objects(apply_ns, name, st1[name].ip)) do
        applies[#applies + 1] = apply_req(o, name)
      end
    end
    t = S.now()
    codes = S.api_many(applies, 16)
    local apply_took = S.now() - t
    for _, c in ipairs(codes) do assert(c == 201 or c == 200, "apply floor answered " .. c) end
    -- A bare client of the operator's protocol (pods of the same names
    -- beside it).
    make_pods(first, nil, proto_ns)
    local proto_took, proto_rounds = protocol_client(proto_ns, first, st1)
    -- The same again while three watches follow its namespace.
    make_pods(first, nil, watched_ns)
    local unwatch = watch_children(watched_ns)
    local watched_took, watched_rounds = protocol_client(watched_ns, first, st1)
    unwatch()
    local cpu1 = op:cpu_seconds()
    local startup, writing = phases(op)
    say("%d pods: %d children written in %.2f s from start; floor client %.2f s; ratio %.2f",
      N, 3 * N, took, floor_took, took / floor_took)
    say("  same objects by apply %.2f s (ratio to it %.2f); operator: %d writes, %d reconciles, "
      .. "%.2f s CPU; its log: caches synced %.2f s after its first line, last write sent %.2f s "
      .. "after that", apply_took, took / apply_took, writes1, reconciles1, cpu1, startup, writing)
    say("  bare client of the operator's protocol, 3 writes in 2 rounds %.2f s (%s; ratio to it "
      .. "%.2f); the same with a watch on each of the three kinds %.2f s (%s; ratio to it %.2f)",
      proto_took, proto_rounds, took / proto_took, watched_took, watched_rounds,
      took / watched_took)
    say("RSS with %d managed pods: %.1f MiB (%.2f x idle; %.2f KiB per pod above idle)",
      N, rss1 / 1024, rss1 / floor_rss, (rss1 - floor_rss) / N)
    last_trim(op)

    local more, st2 = names(N + 1, N + MORE)
    t = S.now()
    make_pods(more, st2)
    wait_written(op, 3 * (N + MORE), 1800)
    local took2 = S.now() - t
    S.sleep(2)
    local rss2 = op:rss_kib()
    local managed = op:metric("envoy_router_managed_pods")
    op:stop()

    say("RSS with %d managed pods: %.1f MiB (%.2f x idle; %.2f KiB per pod above idle); "
      .. "%d more pods' children written in %.1f s; managed_pods %d",
      N + MORE, rss2 / 1024, rss2 / floor_rss, (rss2 - floor_rss) / (N + MORE), MORE, took2,
      managed)
    last_trim(op)
  end)
  for _, o in ipairs(ops) do o:stop() end
  S.cleanup(ns)
  S.cleanup(floor_ns)
  S.cleanup(apply_ns)
  S.cleanup(proto_ns)
  S.cleanup(watched_ns)
  S.cleanup(empty_ns)
  if not ok then error(err, 0) end
end

run()
