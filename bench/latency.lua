-- luacheck: std lua54
-- bench/latency.lua: how long a pod waits for its route, against the
-- loopback control plane of tools/cluster.sh.
--
--   make build && lua5.4 bench/latency.lua [PODS]        (from the checkout root)
--
-- Not part of `make test`: it takes about a minute. It creates PODS (100)
-- labelled pods without IP and as many unlabelled reference pods, starts the
-- operator on that namespace, then for each pod in turn:
--   ours   PATCH the labelled pod's status (IP, Ready) and time from the
--          PATCH's answer to the EndpointSlice with that IP arriving on a
--          watch of EndpointSlices;
--   floor  the same PATCH on a reference pod, which no operator handles:
--          time to that pod's change arriving on a watch of pods ("watch"),
--          and the same plus one EndpointSlice POST answered in turn and its
--          watch event ("controller": the least any controller can need);
--          and a plain GET of one pod ("get").
-- Every request goes over one keep-alive HTTPS connection and every time is
-- taken in this process (bench/conn.lua). Prints median and p99 of each and
-- ours / floor.

package.path = "./bench/?.lua;./?.lua;" .. package.path
local B = require("conn")
local S = B.S
local cjson = require("cjson")

local N = tonumber(arg[1]) or 100
local ns = "bench-latency"

local function ip_of(i, base) return string.format("10.%d.%d.%d", base, i // 250, i % 250 + 1) end

local function status_patch(ip)
  return S.status_body({ ip = ip, ready = true }), "application/merge-patch+json"
end

local function pod_path(name) return "/api/v1/namespaces/" .. ns .. "/pods/" .. name end

local function run()
  S.namespace(ns)
  local labelled, refs = {}, {}
  for i = 1, N do
    labelled[i] = string.format("lat-%03d", i)
    refs[i] = string.format("ref-%03d", i)
  end
  S.pods(ns, labelled)
  S.pods(ns, refs, { labels = { bench = "reference" } })

  local op = S.operator({ "--watch-namespace", ns })
  local conn, pods_w, slices_w
  local ok, err = pcall(function()
    op:wait_ready()
    conn = B.connect()
    local st, body = conn:request("GET", "/api/v1/namespaces/" .. ns .. "/pods?limit=1")
    assert(st == 200, "list pods: HTTP " .. st)
    local rv = cjson.decode(body).metadata.resourceVersion
    pods_w = B.watch("/api/v1/namespaces/" .. ns .. "/pods", rv)
    slices_w = B.watch("/apis/discovery.k8s.io/v1/namespaces/" .. ns .. "/endpointslices", rv)

    local ours, watch_floor, ctl_floor, get_floor = {}, {}, {}, {}
    for i = 1, N do
      -- floor: a plain GET
      local t = S.now()
      st = conn:request("GET", pod_path(refs[i]))
      get_floor[#get_floor + 1] = S.now() - t
      assert(st == 200, "GET: HTTP " .. st)

      -- floor: a status change seen on a watch, then a hand-made controller's POST
      local rip = ip_of(i, 60)
      st = conn:request("PATCH", pod_path(refs[i]) .. "/status", status_patch(rip))
      local t0 = S.now()
      assert(st == 200, "PATCH reference: HTTP " .. st)
      local t1 = pods_w:until_event(function(_, o)
        return o.metadata.name == refs[i] and o.status and o.status.podIP == rip
      end)
      local slices = "/apis/discovery.k8s.io/v1/namespaces/" .. ns .. "/endpointslices"
      st = conn:request("POST", slices, {
        apiVersion = "discovery.k8s.io/v1", kind = "EndpointSlice",
        metadata = { name = refs[i], labels = { ["kubernetes.io/service-name"] = refs[i] } },
        addressType = "IPv4",
        endpoints = { { addresses = { rip }, conditions = { ready = true } } },
        ports = { { name = "http", port = 8080, protocol = "TCP" } },
      })
      assert(st == 201, "POST reference EndpointSlice: HTTP " .. st)
      local t2 = slices_w:until_event(function(_, o)
        return o.metadata.name == refs[i]
      end)
      watch_floor[#watch_floor + 1] = t1 - t0
      ctl_floor[#ctl_floor + 1] = t2 - t0

      -- ours
      local ip = ip_of(i, 50)
      st = conn:request("PATCH", pod_path(labelled[i]) .. "/status", status_patch(ip))
      t0 = S.now()
      assert(st == 200, "PATCH: HTTP " .. st)
      local t3 = slices_w:until_event(function(_, o)
        local ep = o.endpoints and o.endpoints[1]
        return o.metadata.name == labelled[i] and ep and ep.addresses[1] == ip
      end)
      ours[#ours + 1] = t3 - t0
    end

    local function row(name, xs)
      print(string.format("%-44s median %9s   p99 %9s", name, B.ms(B.quantile(xs, 0.5)),
        B.ms(B.quantile(xs, 0.99))))
    end
    print(string.format("# %d pods, %s, %s", N, os.date("!%Y-%m-%dT%H:%M:%SZ"),
      "kube-apiserver " .. cjson.decode(S.must("version -o json")).serverVersion.gitVersion))
    row("ours: status PATCH -> EndpointSlice watched", ours)
    row("floor watch: status PATCH -> pod watched", watch_floor)
    row("floor controller: + POST slice -> watched", ctl_floor)
    row("floor get: GET one pod", get_floor)
    local m = B.quantile(ours, 0.5)
    for _, f in ipairs({ { "controller", ctl_floor }, { "watch", watch_floor },
                         { "get", get_floor } }) do
      print(string.format("ratio ours/floor-%-10s (median) %.2f", f[1], m / B.quantile(f[2], 0.5)))
    end
    print(string.format("operator writes %d (want %d: three creates and one apply of the Service "
      .. "naming its route, per pod)", op:writes(), 4 * N))
  end)
  if pods_w then pods_w:close() end
  if slices_w then slices_w:close() end
  if conn then conn:close() end
  op:stop()
  S.cleanup(ns)
  if not ok then error(err, 0) end
end

run()
