-- luacheck: std lua54
-- bench/reload.lua: how long a script change takes to reach every pod.
--
--   make build && lua5.4 bench/reload.lua [PODS]          (from the checkout root)
--
-- Not part of `make test`. Against the loopback control plane of
-- tools/cluster.sh it creates PODS labelled pods with an IP (default 1,000),
-- runs the operator with --scripts-dir on a temp dir whose router.lua wraps
-- the built-in one with a path prefix "/a", and waits for every HTTPRoute.
-- Then it rewrites router.lua with the prefix "/b" and measures the time from
-- the rename to the moment every HTTPRoute has the new path (read back from
-- the API server), and how much of it was the reload itself (the operator's
-- "scripts: reloaded" log line gives validate_ms: rendering every cached pod
-- with the new scripts before the swap).
-- Floor, in the same run: the first start, i.e. the time for the operator to
-- write PODS HTTPRoutes (plus their Services and EndpointSlices) from nothing.

package.path = "./bench/?.lua;./?.lua;" .. package.path
local B = require("conn")
local S = B.S

local N = tonumber(arg[1]) or 1000
local ns = "bench-reload"

local function router(prefix)
  return string.format([[
local base = require("builtin.router")
return {
  selector = base.selector,
  children = function(pod, config)
    local list, why = base.children(pod, config)
    if not list then return nil, why end
    for _, o in ipairs(list) do
      if o.kind == "HTTPRoute" then
        local m = o.spec.rules[1].matches[1].path
        m.value = %q .. m.value
      end
    end
    return list
  end,
}
]], prefix)
end

local function write(path, text)
  local f = assert(io.open(path .. ".tmp", "w"))
  f:write(text)
  f:close()
  assert(os.rename(path .. ".tmp", path))
end

-- How many of our HTTPRoutes have a path starting with prefix.
local function routes_with(prefix)
  local st, body = B.conn:request("GET", "/apis/gateway.networking.k8s.io/v1/namespaces/" .. ns
    .. "/httproutes?labelSelector=app.kubernetes.io%2Fmanaged-by%3Denvoy-router")
  assert(st == 200, "httproutes: HTTP " .. st)
  local _, n = body:gsub('"value":"' .. prefix:gsub("%p", "%%%0") .. "/", "")
  return n
end

local function run()
  local op, dir
  local ok, err = pcall(function()
    S.namespace(ns)
    B.conn = B.connect()
    local names, statuses = {}, {}
    for i = 1, N do
      names[i] = string.format("reload-%04d", i)
      statuses[names[i]] = { ip = string.format("10.71.%d.%d", i // 250, i % 250 + 1), ready = true }
    end
    S.pods(ns, names)
    S.pods_status(ns, statuses)
    dir = S.sh("mktemp -d"):gsub("%s+$", "")
    write(dir .. "/router.lua", router("/a"))

    local t = S.now()
    op = S.operator({ "--watch-namespace", ns, "--scripts-dir", dir })
    op:wait_ready(60)
    S.eventually(function() return routes_with("/a") == N end, 600, N .. " routes under /a")
    local first = S.now() - t
    S.eventually(function() return op:idle() end, 60, "operator idle")

    t = S.now()
    write(dir .. "/router.lua", router("/b"))
    S.eventually(function() return routes_with("/b") == N end, 600, N .. " routes under /b")
    local reload = S.now() - t
    local validate = tonumber(op:log_text():match('msg="scripts: reloaded".-validate_ms=(%d+)'))

    print(string.format("# %s, %d pods, kube-apiserver on loopback, 2 cores",
      os.date("!%Y-%m-%dT%H:%M:%SZ"), N))
    print(string.format("reload: file renamed -> all %d HTTPRoutes re-rendered in %.2f s "
      .. "(validation of the new scripts on every cached pod: %s ms, debounce 300 ms)",
      N, reload, tostring(validate)))
    print(string.format("floor: first start, %d pods x 3 children written from nothing in %.2f s; "
      .. "ratio %.2f", N, first, reload / first))
  end)
  if op then op:stop() end
  if dir then S.sh("rm -rf " .. S.quote(dir)) end
  if B.conn then B.conn:close() end
  S.cleanup(ns)
  if not ok then error(err, 0) end
end

run()
