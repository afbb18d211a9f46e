-- luacheck: std lua54
-- bench/scale.lua: the operator's memory with many managed pods, and the
-- write requests it makes when restarted with all of them in place.
--
--   make build && lua5.4 bench/scale.lua [PODS]          (from the checkout root)
--
-- Not part of `make test`: with PODS = 1000 (the default) it takes a few
-- minutes on two cores. Against the loopback control plane of
-- tools/cluster.sh it creates PODS labelled pods with an IP, starts the
-- operator on their namespace and waits for all 3 x PODS children, then
-- reads VmRSS from /proc/<pid>/status. It restarts the operator, waits for
-- its caches to sync and its queue to drain, waits 2 s more, and reads
-- rest_client_requests_total for write methods: it must be 0.
-- Floor for the memory: the RSS of the same binary with an empty namespace.

package.path = "./bench/?.lua;./?.lua;" .. package.path
local B = require("conn")
local S = B.S

local N = tonumber(arg[1]) or 1000
local ns = "bench-scale"
local empty_ns = "bench-scale-empty"

local function children(want)
  local n = 0
  for _, kind in ipairs({ "services", "endpointslices", "httproutes" }) do
    local group = kind == "services" and "/api/v1"
      or kind == "endpointslices" and "/apis/discovery.k8s.io/v1"
      or "/apis/gateway.networking.k8s.io/v1"
    local st, body = B.conn:request("GET", group .. "/namespaces/" .. ns .. "/" .. kind
      .. "?labelSelector=app.kubernetes.io%2Fmanaged-by%3Denvoy-router")
    assert(st == 200, kind .. ": HTTP " .. st)
    local _, c = body:gsub('"ownerReferences"', "")
    n = n + c
  end
  return n == want, n
end

local function run()
  local ops = {}
  local ok, err = pcall(function()
    S.namespace(empty_ns)
    S.namespace(ns)
    B.conn = B.connect()
    local names, statuses = {}, {}
    for i = 1, N do
      names[i] = string.format("scale-%04d", i)
      statuses[names[i]] = { ip = string.format("10.70.%d.%d", i // 250, i % 250 + 1),
                             ready = i % 5 ~= 0 }
    end
    local t = S.now()
    S.pods(ns, names)
    S.pods_status(ns, statuses)
    print(string.format("# %d pods created with status in %.1f s", N, S.now() - t))

    -- floor: the same binary, nothing to manage
    local idle = S.operator({ "--watch-namespace", empty_ns })
    ops[#ops + 1] = idle
    idle:wait_ready()
    S.sleep(2)
    local floor_rss = idle:rss_kib()
    idle:stop()

    t = S.now()
    local first = S.operator({ "--watch-namespace", ns })
    ops[#ops + 1] = first
    first:wait_ready(60)
    S.eventually(function() return children(3 * N) end, 600, 3 * N .. " children")
    local took = S.now() - t
    S.eventually(function() return first:idle() end, 60, "first operator idle")
    S.sleep(2)
    local rss1 = first:rss_kib()
    local writes1 = first:writes()
    local managed1 = first:metric("envoy_router_managed_pods")
    first:stop()

    local second = S.operator({ "--watch-namespace", ns })
    ops[#ops + 1] = second
    t = S.now()
    second:wait_ready(60)
    local ready = S.now() - t
    S.eventually(function()
      return second:metric("controller_runtime_reconcile_total") >= N and second:idle()
    end, 120, "restart: all pods reconciled")
    local drained = S.now() - t
    S.sleep(2)
    local writes2 = second:writes()
    local rss2 = second:rss_kib()
    local managed2 = second:metric("envoy_router_managed_pods")
    second:stop()

    print(string.format("# %s, %d pods, kube-apiserver on loopback, 2 cores",
      os.date("!%Y-%m-%dT%H:%M:%SZ"), N))
    print(string.format("first start: %d children in %.1f s, %d write requests, managed_pods %d",
      3 * N, took, writes1, managed1))
    print(string.format("RSS with %d managed pods: %.1f MiB (floor, no pods: %.1f MiB; ratio %.2f; "
      .. "%.1f KiB per pod above the floor)", N, rss1 / 1024, floor_rss / 1024, rss1 / floor_rss,
      (rss1 - floor_rss) / N))
    print(string.format("restart: ready in %.2f s, all %d pods reconciled in %.2f s, "
      .. "write requests %d (must be 0), RSS %.1f MiB, managed_pods %d",
      ready, N, drained, writes2, rss2 / 1024, managed2))
    if writes2 ~= 0 then error("the restart made " .. writes2 .. " write requests") end
  end)
  for _, op in ipairs(ops) do op:stop() end
  if B.conn then B.conn:close() end
  S.cleanup(ns)
  S.cleanup(empty_ns)
  if not ok then error(err, 0) end
end

run()
