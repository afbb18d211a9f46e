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
-- 2. timing, in BENCH_CYCLES cycles (by default one per way, so that each
--    way runs once in each position: later phases are slower, and with 3
--    cycles of 4 ways the operator ran later on average than the bare
--    client and the apply floor); each writes the children of PODS
--    (1,000) pods four ways, each into namespaces of its own, in an order
--    rotated from cycle to cycle (a later phase runs on a fuller etcd and
--    beside the garbage collector's work on the earlier ones):
--    - operator: PODS labelled pods with IPs and Ready, created while no
--      operator runs; the operator starts; time until it has written all
--      3 x PODS children and its queue is empty;
--    - same objects: a bare client (one curl process, 16 requests at a
--      time: the operator's --max-concurrent-writes) writing the objects
--      the operator writes (its built-in templates, its desired-hash
--      annotation, its owners: the pod, and the Service as a blocking owner
--      of the route; pods of the same names beside them, so the owners are
--      real) by its protocol: applies that create (with its precondition),
--      the Services, then the EndpointSlices and HTTPRoutes: 3 writes in 2
--      rounds, the Services' uids read from the first round's answers,
--      timed from the first request to the last answer;
--    - apply floor: the same objects without owners by server-side apply,
--      in pod order, in one round;
--    - create floor: the same, by POST;
--    - (only if BENCH_WAYS names it) watched: the same objects as "same",
--      while four watches follow the namespace as the operator's do.
--    Before each way's time starts, the bench waits until the control
--    plane is quiet (settle()), so that no way pays for the set-up of
--    another (or its own: the pods it was given a moment before).
--    Ratios are taken within a cycle; the medians over cycles are printed.
--    Placement (BENCH_PIN, see place()): by default the control plane runs
--    on core 0 and the clients on core 1, as on separate nodes.
-- 3. RSS of the first cycle's operator with PODS managed pods; then MORE
--    (9,000) more pods in its namespace; RSS once their 3 x MORE children
--    are written (10,000 managed pods in all).
-- The namespaces it deletes at the end keep the cluster's garbage
-- collector busy for minutes (kube-controller-manager's client is limited
-- to 20 requests/s): start each run on a fresh cluster (`make
-- cluster-down` first).

package.path = "./bench/?.lua;./?.lua;" .. package.path
local S = require("spec.e2e.support")
local wall = require("system").gettime

local N = tonumber(arg[1]) or 1000
local MORE = tonumber(arg[2]) or 9000
local CYCLES = tonumber(os.getenv("BENCH_CYCLES") or "")
local empty_ns = "bench-cv-empty"

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
local function make_pods(list, statuses, ns)
  for i = 1, #list, 1000 do
    local batch, st = {}, {}
    for j = i, math.min(i + 999, #list) do
      batch[#batch + 1] = list[j]
      st[list[j]] = statuses and statuses[list[j]]
    end
    S.pods(ns, batch)
    -- A status PATCH is idempotent: on a loaded machine, send the batch again
    -- rather than lose the run to one dropped connection.
    if statuses and not pcall(S.pods_status, ns, st) then S.pods_status(ns, st) end
  end
end

-- The three objects a pod gets, as the built-in templates make them, with
-- a desired-hash annotation as the operator stamps (its value does not
-- matter here). `uid`: the pod's, for the EndpointSlice's targetRef.
local function objects(target_ns, name, ip, uid)
  local function meta(labels)
    return { name = name, namespace = target_ns, labels = labels,
             annotations = { ["envoy-router/desired-hash"] = "0123456789abcdef" } }
  end
  local labels = { ["app.kubernetes.io/managed-by"] = "envoy-router", ["envoy-router/pod"] = name }
  return {
    { path = "/api/v1/namespaces/" .. target_ns .. "/services", body = {
      apiVersion = "v1", kind = "Service", metadata = meta(labels),
      spec = { clusterIP = "None",
               ports = { { name = "http", port = 80, targetPort = 8080, protocol = "TCP" } } } } },
    { path = "/apis/discovery.k8s.io/v1/namespaces/" .. target_ns .. "/endpointslices", body = {
      apiVersion = "discovery.k8s.io/v1", kind = "EndpointSlice",
      metadata = meta({ ["app.kubernetes.io/managed-by"] = "envoy-router",
                        ["endpointslice.kubernetes.io/managed-by"] = "envoy-router",
                        ["envoy-router/pod"] = name, ["kubernetes.io/service-name"] = name }),
      addressType = "IPv4",
      endpoints = { { addresses = { ip },
                      conditions = { ready = true, serving = true, terminating = false },
                      targetRef = { kind = "Pod", namespace = target_ns, name = name,
                                    uid = uid } } },
      ports = { { name = "http", port = 8080, protocol = "TCP" } } } },
    { path = "/apis/gateway.networking.k8s.io/v1/namespaces/" .. target_ns .. "/httproutes",
      body = {
      apiVersion = "gateway.networking.k8s.io/v1", kind = "HTTPRoute", metadata = meta(labels),
      spec = { parentRefs = { { group = "gateway.networking.k8s.io", kind = "Gateway",
                                name = "envoy-router" } },
               rules = { { matches = { { path = { type = "PathPrefix", value = "/" .. name } } },
                           backendRefs = { { group = "", kind = "Service", name = name, port = 80,
                                             weight = 1 } } } } } } },
  }
end

-- A uid for objects written where no pod exists (the floors).
local NO_UID = "00000000-0000-0000-0000-000000000000"
-- The operator's create precondition (host/core.lua): a resourceVersion
-- no object has, so that an apply creates or fails with 409.
local NEVER_RV = "18446744073709551615"

local cjson = require("cjson")
-- lua-cjson escapes "/" as "\/", which is JSON but not YAML.
local function yaml(v) return (cjson.encode(v):gsub("\\/", "/")) end

local function apply_req(o, name)
  return { method = "PATCH", path = o.path .. "/" .. name .. "?fieldManager=bench&force=true",
           body = yaml(o.body), content_type = "application/apply-patch+yaml" }
end

-- The pids of etcd, kube-apiserver and kube-controller-manager, from the
-- files tools/cluster.sh keeps beside the kubeconfig.
-- Read once: settle() asks for them every half second.
local cp_pids
local function control_plane_pids()
  if cp_pids then return cp_pids end
  local dir = S.kubeconfig():match("^(.*)/[^/]+$") or "."
  cp_pids = {}
  for _, c in ipairs({ "etcd", "kube-apiserver", "kube-controller-manager" }) do
    local f = assert(io.open(dir .. "/pids/" .. c .. ".pid", "r"), "no pid file for " .. c)
    cp_pids[#cp_pids + 1] = f:read("l")
    f:close()
  end
  return cp_pids
end

-- CPU seconds the control plane's processes have used so far.
local function control_plane_cpu()
  local total = 0
  for _, pid in ipairs(control_plane_pids()) do
    total = total + S.adopt({ pid = pid }):cpu_seconds()
  end
  return total
end

-- Waits (up to 15 s) until the control plane has used under 5 % of a core
-- for half a second: the work a way's set-up left behind (the pods just
-- made and their statuses, the controllers following them) is done
-- before its time starts, and not charged to whichever way comes next.
-- Each wait's seconds go to `waits`, printed with the cycle.
-- BENCH_SETTLE=0 skips the waits (to compare with runs made without them).
local waits = {}
local function settle()
  if os.getenv("BENCH_SETTLE") == "0" then return end
  local t0 = S.now()
  local before = control_plane_cpu()
  repeat
    S.sleep(0.5)
    local now = control_plane_cpu()
    local quiet = now - before < 0.025
    before = now
  until quiet or S.now() - t0 > 15
  waits[#waits + 1] = string.format("%.1f", S.now() - t0)
end

-- Seconds a bare client takes to write the children of `list` by the
-- operator's protocol, round after round (each round 16 requests at a
-- time, as the operator's --max-concurrent-writes), into `pns`, where pods
-- of the same names exist: ownerReferences must name live pods of the same
-- namespace, or the garbage collector deletes the objects. Every object
-- names its pod as controller, as the operator's do: the Service (with the
-- finalizer foregroundDeletion), then the EndpointSlice and the HTTPRoute
-- together, the route naming the Service as a blocking owner: 3 writes in
-- 2 rounds. Each is an apply that creates, with the operator's
-- precondition (a resourceVersion no object has). The Services' uids come
-- from the first round's answers, as the operator takes them from its
-- own; reading them and preparing the second round are inside the time,
-- from the first request to the last answer (the control plane works on
-- through that gap in the operator's run too). The list of the pods' uids
-- is not timed: the operator's list is.
local function protocol_client(pns, list, statuses)
  local uid, service_uid = {}, {}
  for _, p in ipairs(S.list(pns, "pods")) do uid[p.metadata.name] = p.metadata.uid end
  -- The answers go to memory (tmpfs): curl creating 1,000 files on this
  -- machine's disk made the first round 0.2-0.4 s slower, the client's
  -- cost and not the API server's (the control plane was then idle part
  -- of the time); in /dev/shm they cost nothing measurable.
  local dir = S.sh("mktemp -d -p \"$(test -d /dev/shm && echo /dev/shm || echo /tmp)\"")
    :match("%S+")
  -- The requests of round i (1: the Services; 2: the EndpointSlices and
  -- HTTPRoutes, naming the Services' uids read from round 1's answers).
  local function round(i)
    local kinds = i == 1 and { Service = true } or { EndpointSlice = true, HTTPRoute = true }
    if i == 2 then
      for _, name in ipairs(list) do
        local f = assert(io.open(dir .. "/" .. name, "r"))
        service_uid[name] = cjson.decode(f:read("a")).metadata.uid
        f:close()
      end
    end
    local reqs = {}
    for _, name in ipairs(list) do
      for _, o in ipairs(objects(pns, name, statuses[name].ip, uid[name])) do
        local kind = o.body.kind
        if kinds[kind] then
          local md = o.body.metadata
          md.resourceVersion = NEVER_RV
          md.ownerReferences = { { apiVersion = "v1", kind = "Pod", name = name, uid = uid[name],
                                   controller = true, blockOwnerDeletion = false } }
          if kind == "Service" then md.finalizers = { "foregroundDeletion" } end
          if kind == "HTTPRoute" then
            md.ownerReferences[2] = { apiVersion = "v1", kind = "Service", name = name,
                                      uid = service_uid[name], controller = false,
                                      blockOwnerDeletion = true }
          end
          local r = apply_req(o, name)
          if kind == "Service" then r.output = dir .. "/" .. name end
          reqs[#reqs + 1] = r
        end
      end
    end
    return reqs
  end
  local first_round = round(1)
  settle()
  local t0, each = S.now(), {}
  for i = 1, 2 do
    local reqs = i == 1 and first_round or round(2)
    local t = S.now()
    local codes = S.api_many(reqs, 16)
    each[i] = string.format("%.2f", S.now() - t)
    for _, c in ipairs(codes) do assert(c == 201, "protocol client answered " .. c) end
  end
  local took = S.now() - t0
  S.sh("rm -rf " .. S.quote(dir))
  return took, string.format("rounds %s, in all %.2f", table.concat(each, " + "), took)
end

-- From the operator's log and the wall clock at its start (`w0`) and when
-- the wait saw it done (`w1`), seconds: start to its first line; first
-- line to "caches synced"; from there to the last write it planned (a
-- planned write waits for one of the --max-concurrent-writes slots); from
-- that to seen done (the writes still queued, the last answers, the
-- echoes, the scrape's lag).
local function phases(op, w0, w1)
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
  first, synced, last = first or 0, synced or 0, last or 0
  return first - w0 % 86400, synced - first, last - synced, w1 % 86400 - last
end

local function count_children(target_ns)
  local n = 0
  for _, kind in ipairs({ "services", "endpointslices", "httproutes" }) do
    n = n + #S.list(target_ns, kind, "app.kubernetes.io/managed-by=envoy-router")
  end
  return n
end

-- Waits until the operator has sent `want` writes (answered) and its queue
-- is empty, by its metrics. Light on purpose: the control plane, the
-- operator and this loop share two cores, and the scrapes are CPU the floor
-- clients do not pay (5 curl processes every 50 ms made the operator's time
-- 20-30 % longer; one every 0.1 s still took 0.14 s of CPU in a burst).
-- So one curl process scrapes every 50 ms over one kept-alive connection,
-- and only the three series the wait needs are parsed. The end is seen at
-- most 50 ms late.
local WANTED = { "rest_client_requests_total{", 'workqueue_depth{name="pod"}',
                 'controller_runtime_active_workers{controller="pod"}' }
local function wait_written(op, want, timeout)
  local n = math.ceil(timeout * 20)
  local p = assert(io.popen(string.format("echo $$; exec curl -s --rate 20/s -w '# end\\n' "
    .. "'http://127.0.0.1:%d/metrics?scrape=[1-%d]'", op.metrics_port, n)))
  local pid = p:read("l")
  local m, done = {}, false
  for line in p:lines() do
    if line == "# end" then
      if op:writes(m) >= want and op:idle(m) then done = true; break end
      m = {}
    else
      for _, prefix in ipairs(WANTED) do
        if line:sub(1, #prefix) == prefix then
          local k, v = line:match("^(%S+)%s+(%S+)$")
          if k then m[k] = tonumber(v) end
        end
      end
    end
  end
  os.execute("kill " .. pid .. " 2>/dev/null")
  p:close()
  assert(done, want .. " writes and an empty queue within " .. timeout .. " s; log " .. op.log)
end

local function median(xs)
  local t = {}
  for i, x in ipairs(xs) do t[i] = x end
  table.sort(t)
  return #t % 2 == 1 and t[(#t + 1) // 2] or (t[#t // 2] + t[#t // 2 + 1]) / 2
end

local function say(...) print(string.format(...)); io.stdout:flush() end

local function last_trim(o)
  local line
  for l in o:log_text():gmatch("[^\n]+") do
    if l:find("core: trimmed", 1, true) then line = l end
  end
  if line then say("  %s", line) end
end

-- Where the processes run. In a cluster the operator runs on a node of its
-- own, never on the API server's cores; on this machine both share two
-- cores, so every CPU-second the operator (or a floor client) takes is one
-- the control plane does not get. BENCH_PIN=1 (the default on two or more
-- cores) models separate nodes: etcd, kube-apiserver and
-- kube-controller-manager on core 0, this process and every client it
-- starts (the operator, the floors' curl) on core 1. BENCH_PIN=0 shares
-- both cores, as before. Returns what the run used, for its first line.
local function place()
  local cores = tonumber(S.sh("nproc"):match("%d+")) or 1
  if os.getenv("BENCH_PIN") == "0" or cores < 2 then
    return "control plane and clients share " .. cores .. " cores"
  end
  for _, pid in ipairs(control_plane_pids()) do
    S.sh("taskset -a -p -c 0 " .. pid .. " >/dev/null")
  end
  -- $PPID: this Lua process (the shell's parent); what it starts inherits.
  S.sh("taskset -p -c 1 $PPID >/dev/null")
  return "control plane on core 0, the operator and the floor clients on core 1 (BENCH_PIN=0: "
    .. "shared)"
end

local function op_args(ons)
  local args = { "--watch-namespace", ons }
  -- BENCH_LOG_LEVEL=debug: the operator logs its Lua heap and pool after
  -- each trim, and the last such line is printed with each RSS.
  if os.getenv("BENCH_LOG_LEVEL") then
    args[#args + 1] = "--log-level=" .. os.getenv("BENCH_LOG_LEVEL")
  end
  return args
end

-- The four ways of one cycle. Each takes the cycle's number, the pods'
-- names and statuses, and `keep` (told each namespace and operator made,
-- for the clean-up); returns the seconds it took and a note.
local WAYS = {}

local function namespace(name, keep)
  keep.namespace(name)
  S.namespace(name)
  return name
end

function WAYS.operator(c, first, st, keep)
  local ons = namespace("bench-cv-op-" .. c, keep)
  make_pods(first, st, ons)
  settle()
  local t, w0 = S.now(), wall()
  local op = S.operator(op_args(ons))
  keep.operator(op)
  wait_written(op, 3 * #first, 600)
  local took, w1 = S.now() - t, wall()
  assert(count_children(ons) == 3 * #first, "children after the operator's start")
  return took, string.format("%d writes, %d reconciles, %.2f s CPU; first line %.2f s after "
    .. "the start, caches synced %.2f s later, last write planned %.2f s after that, seen done "
    .. "%.2f s after that", op:writes(), op:metric("controller_runtime_reconcile_total"),
    op:cpu_seconds(), phases(op, w0, w1)), op
end

function WAYS.same(c, first, st, keep)
  local pns = namespace("bench-cv-same-" .. c, keep)
  make_pods(first, nil, pns)
  return protocol_client(pns, first, st)
end

-- The same, while four watches follow the namespace as the operator's do
-- (pods; Services, EndpointSlices and HTTPRoutes by its label), each a curl
-- process: every write goes out again on a watch. Not in the default
-- order; BENCH_WAYS="operator same watched apply create" adds it.
function WAYS.watched(c, first, st, keep)
  local pns = namespace("bench-cv-watched-" .. c, keep)
  make_pods(first, nil, pns)
  local api = S.api_base()
  local sel = "?watch=1&labelSelector=app.kubernetes.io%2Fmanaged-by%3Denvoy-router"
  local pids = {}
  for _, path in ipairs({ "/api/v1/namespaces/" .. pns .. "/pods?watch=1",
      "/api/v1/namespaces/" .. pns .. "/services" .. sel,
      "/apis/discovery.k8s.io/v1/namespaces/" .. pns .. "/endpointslices" .. sel,
      "/apis/gateway.networking.k8s.io/v1/namespaces/" .. pns .. "/httproutes" .. sel }) do
    pids[#pids + 1] = S.sh(string.format("(curl -sN --cacert '%s' -H 'Authorization: Bearer %s' "
      .. "'%s%s' >/dev/null 2>&1 & echo $!)", api.cacert, api.token, api.server, path)):match("%d+")
  end
  S.sleep(0.3)
  local took, rounds = protocol_client(pns, first, st)
  S.sh("kill " .. table.concat(pids, " "))
  return took, rounds
end

-- A floor: one client writing the same objects without owners into a
-- namespace of its own, each object by request(o, name); every answer's
-- code must be in `ok`.
local function floor(way, request, ok)
  return function(c, first, st, keep)
    local fns = namespace("bench-cv-" .. way .. "-" .. c, keep)
    local reqs = {}
    for _, name in ipairs(first) do
      for _, o in ipairs(objects(fns, name, st[name].ip, NO_UID)) do
        reqs[#reqs + 1] = request(o, name)
      end
    end
    settle()
    local t = S.now()
    local codes = S.api_many(reqs, 16)
    local took = S.now() - t
    assert(#codes == #reqs, way .. " floor: " .. #codes .. " answers to " .. #reqs .. " requests")
    for _, code in ipairs(codes) do
      assert(ok[code], way .. " floor answered " .. code)
    end
    return took, ""
  end
end

WAYS.apply = floor("apply", apply_req, { [200] = true, [201] = true })
WAYS.create = floor("create", function(o)
  return { method = "POST", path = o.path, body = o.body }
end, { [201] = true })

-- The ways of a cycle, "operator" first; each other way's ratio is the
-- operator's time over its time.
local ORDER = {}
for w in (os.getenv("BENCH_WAYS") or "operator same apply create"):gmatch("%S+") do
  assert(WAYS[w], "no way " .. w .. " (BENCH_WAYS)")
  ORDER[#ORDER + 1] = w
end
assert(ORDER[1] == "operator", "BENCH_WAYS starts with operator")
CYCLES = CYCLES or #ORDER
local LABEL = { same = "same objects by the operator's protocol",
                watched = "the same while four watches follow",
                apply = "apply floor", create = "create floor" }

local function run()
  local ops, namespaces = {}, { empty_ns }
  local keep = { operator = function(o) ops[#ops + 1] = o end,
                 namespace = function(n) namespaces[#namespaces + 1] = n end }
  local ok, err = pcall(function()
    local placement = place()
    S.namespace(empty_ns)
    local idle = S.operator({ "--watch-namespace", empty_ns })
    ops[#ops + 1] = idle
    idle:wait_ready()
    S.sleep(2)
    local floor_rss = idle:rss_kib()
    idle:stop()
    say("# %s, kube-apiserver on loopback; %s", os.date("!%Y-%m-%dT%H:%M:%SZ"), placement)
    say("idle RSS (same binary, empty namespace): %.1f MiB", floor_rss / 1024)

    local first, st1 = names(1, N)
    local ratios = {}
    for i = 2, #ORDER do ratios[ORDER[i]] = {} end
    local main_op
    for c = 1, CYCLES do
      local took, notes, order = {}, {}, {}
      for i = 1, #ORDER do
        local way = ORDER[(i + c - 2) % #ORDER + 1]
        order[i] = way
        local op
        took[way], notes[way], op = WAYS[way](c, first, st1, keep)
        if op and c == 1 then
          main_op = op
          S.sleep(2)
          notes.rss = op:rss_kib()
        elseif op then
          op:stop()
        end
      end
      say("cycle %d (order %s): operator %.2f s (%s)", c, table.concat(order, ", "),
        took.operator, notes.operator)
      local parts = {}
      for i = 2, #ORDER do
        local way = ORDER[i]
        table.insert(ratios[way], took.operator / took[way])
        parts[#parts + 1] = string.format("%s %.2f s%s: ratio %.2f", LABEL[way], took[way],
          notes[way] ~= "" and " (" .. notes[way] .. ")" or "", took.operator / took[way])
      end
      say("  %s; waits for a quiet control plane before each: %s s", table.concat(parts, "; "),
        table.concat(waits, ", "))
      waits = {}
      if notes.rss then
        say("RSS with %d managed pods: %.1f MiB (%.2f x idle; %.2f KiB per pod above idle)",
          N, notes.rss / 1024, notes.rss / floor_rss, (notes.rss - floor_rss) / N)
        last_trim(main_op)
      end
    end
    local meds = {}
    for i = 2, #ORDER do
      meds[#meds + 1] = string.format("/ %s %.2f", LABEL[ORDER[i]], median(ratios[ORDER[i]]))
    end
    say("%d pods, median of %d cycles: operator %s", N, CYCLES, table.concat(meds, ", "))

    if MORE > 0 then
      local more, st2 = names(N + 1, N + MORE)
      local t = S.now()
      make_pods(more, st2, "bench-cv-op-1")
      wait_written(main_op, 3 * (N + MORE), 1800)
      local took2 = S.now() - t
      S.sleep(2)
      local rss2 = main_op:rss_kib()
      local managed = main_op:metric("envoy_router_managed_pods")
      say("RSS with %d managed pods: %.1f MiB (%.2f x idle; %.2f KiB per pod above idle); "
        .. "%d more pods' children written in %.1f s; managed_pods %d",
        N + MORE, rss2 / 1024, rss2 / floor_rss, (rss2 - floor_rss) / (N + MORE), MORE, took2,
        managed)
      last_trim(main_op)
    end
  end)
  for _, o in ipairs(ops) do o:stop() end
  for _, n in ipairs(namespaces) do S.cleanup(n) end
  if not ok then error(err, 0) end
end

run()
