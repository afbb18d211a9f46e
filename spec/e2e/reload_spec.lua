-- Live reload of users' scripts (--scripts-dir) against the real API server:
-- a broken script never replaces the running one; a good one is validated on
-- every cached pod, swapped in and applied to all pods.
local S = require("spec.e2e.support")

local function write(path, text)
  -- Written aside and renamed, as editors and kubelet do, so the operator
  -- never reads half a file.
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

local function route_path(ns, name)
  local r = S.get(ns, "httproute", name)
  return r and r.spec.rules[1].matches[1].path.value
end

-- A router that wraps the built-in one and prefixes every path.
local function prefixed(prefix)
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

local BROKEN = {
  { "a syntax error", "return {" },
  { "a runtime error", [[
return { selector = "envoy-router/enabled=true",
         children = function(pod) error("boom for " .. pod.metadata.name) end }]] },
  { "an endless loop", [[
return { selector = "envoy-router/enabled=true",
         children = function() while true do end end }]] },
  { "a memory bomb", [[
return { selector = "envoy-router/enabled=true",
         children = function() local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 4096) .. i end end }]] },
  { "a kind it may not write", [[
return { selector = "envoy-router/enabled=true",
         children = function(pod) return { { apiVersion = "v1", kind = "ConfigMap",
           metadata = { name = pod.metadata.name }, data = { a = "b" } } } end }]] },
  { "a child in another namespace", [[
local base = require("builtin.router")
return { selector = base.selector, children = function(pod, config)
  local list = base.children(pod, config)
  if list then list[1].metadata.namespace = "kube-system" end
  return list
end }]] },
  -- Before the host checked the selector's syntax, this one swapped in and
  -- the pod watch then failed with 400 for ever.
  { "a selector the API server refuses", [[
local base = require("builtin.router")
return { selector = "envoy-router/enabled in true", children = base.children }]] },
  -- Grammar the host's check passes (it checks that a '>' operand is
  -- digits, not that it fits in an int64): only the API server's own
  -- verdict, a LIST with the selector before the swap, keeps it out.
  { "a selector only the API server refuses", [[
local base = require("builtin.router")
return { selector = base.selector .. ",n>99999999999999999999", children = base.children }]],
    "the API server refuses the selector" },
  { "a LoadBalancer Service", [[
local base = require("builtin.router")
return { selector = base.selector, children = function(pod, config)
  local list = base.children(pod, config)
  for _, o in ipairs(list or {}) do
    if o.kind == "Service" then o.spec.type = "LoadBalancer" o.spec.clusterIP = nil end
  end
  return list
end }]] },
  { "a finalizer", [[
setmetatable({}, { __gc = function() while true do end end })
return require("builtin.router")]] },
}

describe("scripts reload", function()
  local ns, dir, op

  setup(function()
    ns = S.namespace("e2e-reload")
    dir = S.sh("mktemp -d"):gsub("%s+$", "")
    write(dir .. "/router.lua", prefixed("/a"))
    for i = 1, 3 do
      S.pod(ns, "r" .. i)
      S.pod_status(ns, "r" .. i, { ip = "10.20.0." .. i, ready = true })
    end
    op = S.operator({ "--watch-namespace", ns, "--scripts-dir", dir })
    op:wait_ready()
    for i = 1, 3 do
      S.eventually(function() return route_path(ns, "r" .. i) == "/a/r" .. i end, 5)
    end
  end)

  teardown(function()
    if op then op:stop() end
    if dir then S.sh("rm -rf " .. S.quote(dir)) end
  end)

  for i, case in ipairs(BROKEN) do
    it("keeps the running scripts on " .. case[1], function()
      local errors = op:metric("envoy_router_script_reloads_total", { result = "error" })
      write(dir .. "/router.lua", case[2])
      S.eventually(function()
        return op:metric("envoy_router_script_reloads_total", { result = "error" }) == errors + 1
      end, 10, "reload error counted")
      assert.is_true(op:alive())
      -- The old scripts still serve: a new pod gets the old path format.
      local name = "late" .. i
      S.pod(ns, name)
      S.pod_status(ns, name, { ip = "10.20.1." .. i, ready = true })
      S.eventually(function() return route_path(ns, name) == "/a/" .. name end, 5)
      assert.truthy(op:log_text():find("reload failed; the running scripts stay", 1, true))
      if case[3] then assert.truthy(op:log_text():find(case[3], 1, true), case[3]) end
    end)
  end

  it("applies a fixed script to every pod within 5 s, re-rendering routes", function()
    local ok = op:metric("envoy_router_script_reloads_total", { result = "success" })
    local t0 = S.now()
    write(dir .. "/router.lua", prefixed("/b"))
    S.eventually(function()
      for i = 1, 3 do
        if route_path(ns, "r" .. i) ~= "/b/r" .. i then return false end
      end
      for i = 1, #BROKEN do
        if route_path(ns, "late" .. i) ~= "/b/late" .. i then return false end
      end
      return true
    end, 5, "all routes re-rendered")
    print(string.format("# reload: file written -> %d routes re-rendered in %.2f s",
      3 + #BROKEN, S.now() - t0))
    assert.are.equal(ok + 1, op:metric("envoy_router_script_reloads_total", { result = "success" }))
  end)

  it("reloads on SIGHUP", function()
    local ok = op:metric("envoy_router_script_reloads_total", { result = "success" })
    S.sh("kill -HUP " .. op.pid)
    S.eventually(function()
      return op:metric("envoy_router_script_reloads_total", { result = "success" }) == ok + 1
    end, 5)
  end)

  it("passes pod annotations once router.lua asks for them (the pod cache is projected anew)",
    function()
    -- Annotated while the running scripts do not read annotations: the
    -- cache drops them.
    local code = S.api("PATCH", "/api/v1/namespaces/" .. ns .. "/pods/r1",
      { metadata = { annotations = { ["example.com/team"] = "data" } } },
      "application/merge-patch+json")
    assert.are.equal(200, code)
    write(dir .. "/router.lua", [[
local base = require("builtin.router")
return {
  selector = base.selector,
  pod_annotations = true,
  children = function(pod, config)
    local list, why = base.children(pod, config)
    if not list then return nil, why end
    local team = (pod.metadata.annotations or {})["example.com/team"]
    if team then list[1].metadata.annotations = { team = team } end
    return list
  end,
}
]])
    S.eventually(function()
      local svc = S.get(ns, "service", "r1")
      return svc and (svc.metadata.annotations or {}).team == "data"
    end, 10, "the annotation reached the script")
    assert.truthy(op:log_text():find("pod-annotations", 1, true))
  end)

  it("follows a ConfigMap volume's ..data symlink swap", function()
    op:stop()
    local cm = S.sh("mktemp -d"):gsub("%s+$", "")
    -- The layout kubelet writes: timestamped dir, ..data -> it, file -> ..data/file.
    S.sh(string.format("cd %s && mkdir ..v1 && ln -s ..v1 ..data && ln -s ..data/router.lua router.lua",
      S.quote(cm)))
    write(cm .. "/..v1/router.lua", prefixed("/c"))
    op = S.operator({ "--watch-namespace", ns, "--scripts-dir", cm })
    op:wait_ready()
    S.eventually(function() return route_path(ns, "r1") == "/c/r1" end, 5)
    S.sh(string.format("cd %s && mkdir ..v2", S.quote(cm)))
    write(cm .. "/..v2/router.lua", prefixed("/d"))
    S.sh(string.format("cd %s && ln -s ..v2 ..data_tmp && mv -T ..data_tmp ..data && rm -rf ..v1",
      S.quote(cm)))
    S.eventually(function() return route_path(ns, "r1") == "/d/r1" end, 5)
    S.sh("rm -rf " .. S.quote(cm))
  end)
end)

-- Stops the operator, removes the scripts directory and the namespace.
local function finish(op, dir, ns)
  if op then op:stop() end
  if dir then S.sh("rm -rf " .. S.quote(dir)) end
  if ns then S.cleanup(ns) end
end

-- A slow but valid script validated on many pods must not stop the
-- operator: validation runs in slices with the main loop serving between
-- them, so watches and reconciles go on (with the running scripts) and
-- /healthz answers throughout.
describe("scripts reload with a slow script", function()
  local ns, dir, op
  local N = 120

  -- prefixed(), but every call first burns a few million instructions.
  local function slow(prefix)
    return "local x = 0 for i = 1, 4000000 do x = x + i end\n" .. prefixed(prefix)
      :gsub("children = function%(pod, config%)",
            "children = function(pod, config)\n    for i = 1, 4000000 do x = x + i end", 1)
  end

  setup(function()
    ns = S.namespace("e2e-reload-slow")
    dir = S.sh("mktemp -d"):gsub("%s+$", "")
    write(dir .. "/router.lua", prefixed("/a"))
    local names, statuses = {}, {}
    for i = 1, N do
      names[i] = "s" .. i
      statuses[names[i]] = { ip = string.format("10.30.%d.%d", i // 200, i % 200 + 1), ready = true }
    end
    S.pods(ns, names)
    S.pods_status(ns, statuses)
    op = S.operator({ "--watch-namespace", ns, "--scripts-dir", dir })
    op:wait_ready()
    S.eventually(function() return route_path(ns, "s" .. N) == "/a/s" .. N end, 30)
  end)

  teardown(function() finish(op, dir, ns) end)

  it("keeps serving watches and /healthz while it validates", function()
    local ok = op:metric("envoy_router_script_reloads_total", { result = "success" })
    local t0 = S.now()
    write(dir .. "/router.lua", slow("/b"))
    -- Wait until the validation has begun (the debounce is 300 ms), then a
    -- new pod arrives: the running scripts give it its route meanwhile.
    S.sleep(1)
    S.pod(ns, "fresh")
    S.pod_status(ns, "fresh", { ip = "10.30.9.9", ready = true })
    local worst, probes, routed_during = 0, 0, false
    S.eventually(function()
      local p0 = S.now()
      local _, code = op:http(op.health_port, "/healthz")
      worst = math.max(worst, S.now() - p0)
      probes = probes + 1
      assert.are.equal(200, code)
      local done = op:metric("envoy_router_script_reloads_total", { result = "success" }) == ok + 1
      if not done and route_path(ns, "fresh") == "/a/fresh" then routed_during = true end
      return done
    end, 120, "slow reload finished")
    local took = S.now() - t0
    print(string.format("# slow reload: %d pods validated in %.1f s; %d /healthz probes, "
      .. "slowest %.3f s; new pod routed during validation: %s", N + 1, took, probes, worst,
      tostring(routed_during)))
    assert.is_true(took > 3, "the script was meant to be slow: " .. took .. " s")
    assert.is_true(routed_during, "a pod created during validation waited for it to finish")
    assert.is_true(worst < 2, "a /healthz probe took " .. worst .. " s")
    S.eventually(function() return route_path(ns, "s1") == "/b/s1" end, 60)
  end)
end)

-- The same at the size the issue names: 2,000 cached pods (Pending, without
-- an IP, so they cost the API server no children) under a script that burns
-- about 5 ms a call, so validation takes seconds. Meanwhile the loop keeps
-- serving: a pod created during validation gets its children from the
-- running scripts, /healthz (liveness) and /readyz keep answering 200 within
-- a kubelet probe's default 1 s, and the reload completes.
describe("scripts reload with a slow script on 2,000 pods", function()
  local ns, dir, op
  local N = 2000
  local SAME = 'return require("builtin.router")\n'
  -- The built-in router's children, each call first burning instructions.
  local SLOW = [[
local base = require("builtin.router")
return {
  selector = base.selector,
  templates = base.templates,
  children = function(pod, config)
    local x = 0
    for i = 1, 1000000 do x = x + i end
    return base.children(pod, config)
  end,
}
]]

  setup(function()
    ns = S.namespace("e2e-reload-2k")
    dir = S.sh("mktemp -d"):gsub("%s+$", "")
    write(dir .. "/router.lua", SAME)
    local names = {}
    for i = 1, N do names[i] = string.format("p%04d", i) end
    S.pods(ns, names)
    op = S.operator({ "--watch-namespace", ns, "--scripts-dir", dir })
    op:wait_ready(60)
    S.eventually(function()
      return op:metric("envoy_router_cached_pods") >= N
    end, 60, "every pod cached")
  end)

  teardown(function() finish(op, dir, ns) end)

  it("validates in slices: probes answer, a new pod is routed, the reload completes", function()
    local ok = op:metric("envoy_router_script_reloads_total", { result = "success" })
    local t0 = S.now()
    write(dir .. "/router.lua", SLOW)
    -- The debounce is 300 ms; then validation runs for seconds.
    S.sleep(1)
    S.pod(ns, "fresh")
    S.pod_status(ns, "fresh", { ip = "10.31.0.1", ready = true })
    local t_fresh = S.now()
    local worst, probes, routed_at = 0, 0, nil
    local done = false
    S.eventually(function()
      for _, path in ipairs({ "/healthz", "/readyz" }) do
        local p0 = S.now()
        local _, code = op:http(op.health_port, path)
        worst = math.max(worst, S.now() - p0)
        probes = probes + 1
        assert.are.equal(200, code, path)
      end
      done = op:metric("envoy_router_script_reloads_total", { result = "success" }) == ok + 1
      if not done and not routed_at and S.get(ns, "endpointslice", "fresh") then
        routed_at = S.now()
      end
      return done
    end, 180, "slow reload finished")
    local took = S.now() - t0
    print(string.format("# slow reload on %d cached pods: validated and swapped in %.1f s; %d probes "
      .. "(/healthz, /readyz), slowest %.3f s; a pod created during validation had its "
      .. "EndpointSlice after %s s", N + 1, took, probes, worst,
      routed_at and string.format("%.1f", routed_at - t_fresh) or "(not before the swap)"))
    assert.is_true(took > 5, "the script was meant to be slow: " .. took .. " s")
    assert.is_true(worst < 1, "a probe took " .. worst .. " s")
    assert.truthy(routed_at, "the pod created during validation waited for it to finish")
    assert.is_true(op:alive())
    assert.equal(0, op:metric("envoy_router_script_reloads_total", { result = "error" }))
  end)
end)
