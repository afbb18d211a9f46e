-- luacheck: std lua54
-- bench/traffic.lua: how long until a pod answers through real Envoy Gateway
-- and Envoy, on the loopback control plane and the data plane of
-- tools/dataplane.sh (root needed: pod stand-ins live on addresses of lo).
--
--   make build helm-deps .cache/bin/envoy-gateway .cache/bin/envoy
--   lua5.4 bench/traffic.lua [SERIAL] [BURST]
--
-- Not part of `make test`. Two figures (bench/traffic_probe.py times them):
--   serial  SERIAL (100) pods, one at a time: status PATCH (IP, Ready)
--           answered -> first GET /<pod>/ through Envoy answering 200 with
--           the pod's name; median and p99.
--   burst   BURST (300) pods made ready at once (16 PATCHes in flight): time
--           from the last status write until every pod answered, against
--           the time each pod's EndpointSlice (with its IP) arrived on a
--           watch in the same run.
-- Stops the data plane at the end (tools/dataplane.sh down).

package.path = "./?.lua;" .. package.path
local D = require("spec.dataplane.support")
local S = D.S

local SERIAL = tonumber(arg[1]) or 100
local BURST = tonumber(arg[2]) or 300

local function pct(list, p)
  table.sort(list)
  local i = math.max(1, math.ceil(#list * p / 100))
  return list[i]
end

local function setup(ns, n, base, port)
  S.namespace(ns)
  local gw = D.gateway("envoy-router", ns, { "--set", "gateway.port=" .. port })
  local names, map = {}, {}
  for i = 1, n do
    names[i] = string.format("b%03d", i)
    map[names[i]] = string.format("10.%d.%d.%d", base, i // 250, i % 250 + 1)
  end
  local pods = D.pods(map)
  S.pods(ns, names)
  local op = D.operator(ns, gw)
  return gw, names, map, pods, op
end

local function probe(mode, ns, gw, names, map)
  local api = S.api_base()
  local dir = S.kubeconfig():match("^(.*)/[^/]+$")
  local args = {}
  for _, n in ipairs(names) do args[#args + 1] = n .. "=" .. map[n] end
  local out, ok, err = S.sh(string.format("python3 bench/traffic_probe.py %s %s %s %s %s %d %s",
    mode, api.server, dir .. "/admin.token", api.cacert, ns, gw.port, table.concat(args, " ")))
  assert(ok, "traffic_probe " .. mode .. " failed: " .. err)
  return out
end

local function main()
  D.up()
  local rss = {}

  -- serial
  local ns = "bench-traffic-serial"
  local gw, names, map, pods, op = setup(ns, SERIAL, 245, 86)
  local t, sl = {}, {}
  for line in probe("serial", ns, gw, names, map):gmatch("[^\n]+") do
    local a, b = line:match("%S+ (%S+) (%S+)")
    t[#t + 1] = tonumber(a)
    sl[#sl + 1] = tonumber(b)
  end
  print(string.format("serial: %d pods, status PATCH answered -> first 200 through Envoy: "
    .. "median %.1f ms, p99 %.1f ms, max %.1f ms", #t, pct(t, 50), pct(t, 99), pct(t, 100)))
  print(string.format("  same PATCH -> its EndpointSlice on a watch (the operator's part): "
    .. "median %.1f ms, p99 %.1f ms", pct(sl, 50), pct(sl, 99)))
  op:stop()
  pods:stop()
  S.cleanup(ns)

  -- burst
  ns = "bench-traffic-burst"
  gw, names, map, pods, op = setup(ns, BURST, 246, 87)
  local out = probe("burst", ns, gw, names, map)
  local last_write = tonumber(out:match("last_write (%S+)"))
  local slices, answers = {}, {}
  for _, s, a in out:gmatch("(%S+) slice (%S+) answer (%S+)") do
    if tonumber(s) then slices[#slices + 1] = tonumber(s) end
    answers[#answers + 1] = tonumber(a)
  end
  table.sort(slices)
  table.sort(answers)
  print(string.format("burst: %d pods made ready at once; last status write at %.2f s", #answers,
    last_write))
  print(string.format(
    "  EndpointSlices on a watch: last %.2f s after the last write (median %.2f s)",
    slices[#slices] - last_write, pct(slices, 50) - last_write))
  print(string.format(
    "  answering through Envoy:   all %.2f s after the last write (median %.2f s)",
    answers[#answers] - last_write, pct(answers, 50) - last_write))
  for _, name in ipairs({ "envoy-gateway", "envoy" }) do
    local pids = S.sh("pgrep -x " .. name)
    for pid in pids:gmatch("%d+") do
      local f = io.open("/proc/" .. pid .. "/status")
      if f then
        rss[#rss + 1] = name .. " " .. (f:read("a"):match("VmRSS:%s*(%d+)") // 1024) .. " MiB"
        f:close()
      end
    end
  end
  rss[#rss + 1] = "operator " .. (op:rss_kib() // 1024) .. " MiB"
  print("  RSS after the burst: " .. table.concat(rss, ", "))
  op:stop()
  pods:stop()
  S.cleanup(ns)
end

local ok, err = pcall(main)
S.sh("tools/dataplane.sh down")
if not ok then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
