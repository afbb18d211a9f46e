-- spec/dataplane/support.lua: what the data-plane specs share, on top of
-- spec/e2e/support.lua. It drives tools/dataplane.sh (real Envoy Gateway and
-- Envoy on the loopback cluster, pods stood in for by HTTP servers on lo)
-- and sends requests through Envoy as a client would.
--
--   local D = require("spec.dataplane.support")
--   local S = D.S
--   D.up()                                        -- Envoy Gateway
--   local gw = D.gateway("envoy-router", ns)      -- { port, name }
--   local pods = D.pods({ p1 = "10.244.1.1" })    -- stand-ins; pods:stop()
--   D.get(gw.port, "/p1/")                        -- 200, "p1\n/p1/\n..."
--   local c = D.client(gw.port, { "/p1/" })       -- a client loop
--   local answers = c:stop()                      -- every answer it got
--
-- tools/dataplane.sh down (run by `make test-dataplane` on exit, also after a
-- failure) stops what this starts.

local S = require("spec.e2e.support")

local D = { S = S }

local root = os.getenv("ENVOY_ROUTER_ROOT") or "."
D.script = root .. "/tools/dataplane.sh"
D.pod_port = 9090 -- not 8080: Envoy Gateway's own metrics server listens there

-- Processes a spec starts (client loops, operators) are recorded where
-- `tools/dataplane.sh down` finds them, so they are stopped even when a spec
-- or busted itself dies half-way.
local state = os.getenv("DATAPLANE_DIR") or (root .. "/.cache/dataplane")
local function record(pid)
  S.sh("mkdir -p " .. S.quote(state .. "/spawned") .. " && echo " .. pid .. " > "
    .. S.quote(state .. "/spawned/" .. pid .. ".pid"))
end

local function run(args)
  local out, ok, err = S.sh(D.script .. " " .. args)
  assert(ok, "tools/dataplane.sh " .. args .. " failed:\n" .. err)
  return out
end

local up = false
-- Starts (or reuses) Envoy Gateway on the cluster.
function D.up()
  S.kubeconfig()
  if not up then
    run("up")
    up = true
  end
end

-- Applies the data-plane objects of `helm template <release> charts/envoy-router
-- -n <ns> <helm_args>` and runs their Envoy. Returns { port, name }: Envoy's
-- listener port on 127.0.0.1 and the Gateway's name.
function D.gateway(release, ns, helm_args)
  local args = {}
  for _, a in ipairs(helm_args or {}) do args[#args + 1] = S.quote(a) end
  local out = run(string.format("gateway %s %s %s", release, ns, table.concat(args, " ")))
  local port = tonumber(out:match("port=(%d+)"))
  assert(port, "no port in: " .. out)
  local gw = S.list(ns, "gateways")[1]
  return { port = port, name = gw.metadata.name, admin = tonumber(out:match("admin=(%d+)")) }
end

function D.restart_eg() run("restart-eg") end

local Pods = {}
Pods.__index = Pods

-- Pod stand-ins answering on D.pod_port: map of pod name -> IP (10.x.y.z).
function D.pods(map)
  local args = {}
  local names = {}
  for name in pairs(map) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do args[#args + 1] = name .. "=" .. map[name] end
  local out = run(string.format("pods %d %s", D.pod_port, table.concat(args, " ")))
  return setmetatable({ pid = tonumber(out:match("(%d+)%s*$")), map = map }, Pods)
end

function Pods:stop()
  if self.pid then run("pods-stop " .. self.pid) end
  self.pid = nil
end

-- One GET through Envoy: status (0 when nothing answered), body.
function D.get(port, path, host)
  local h = host and ("-H " .. S.quote("Host: " .. host) .. " ") or ""
  local out = S.sh(string.format(
    "curl -s --max-time 5 %s-w '\\n%%{http_code}' http://127.0.0.1:%d%s", h, port, path))
  local body, code = out:match("^(.*)\n(%d+)$")
  return tonumber(code) or 0, body or ""
end

-- Waits until GET answers `status` (and, when given, a body whose first line
-- is `first`); returns the seconds it took.
function D.wait_answer(port, path, status, first, timeout, host)
  local t0 = S.now()
  local last
  repeat
    local code, body = D.get(port, path, host)
    last = code .. " " .. (body:match("^[^\n]*") or "")
    if code == status and (first == nil or body:match("^[^\n]*") == first) then
      return S.now() - t0
    end
    S.sleep(0.05)
  until S.now() - t0 > (timeout or 30)
  error(string.format("GET %s: no %d %s within %s s (last answer: %s)", path, status, first or "",
    timeout or 30, last), 2)
end

local Client = {}
Client.__index = Client

-- A client loop: GET each path in turn, over and over (tools/dataplane/client.py).
function D.client(port, paths, host)
  local out = os.tmpname()
  local args = {}
  for _, p in ipairs(paths) do args[#args + 1] = S.quote(p) end
  local pid = S.sh(string.format(
    "(exec python3 %s/tools/dataplane/client.py %s %d %s %s >/dev/null 2>&1 & echo $!)",
    root, out, port, S.quote(host or "-"), table.concat(args, " "))):match("%d+")
  record(pid)
  return setmetatable({ pid = tonumber(pid), out = out }, Client):wait()
end

-- Waits until the loop has `n` answers (default 1): it is running.
function Client:wait(n)
  S.eventually(function() return #self:answers() >= (n or 1) end, 10, "client loop answers")
  return self
end

-- Answers so far: list of { t, path, status, first }.
function Client:answers()
  local list = {}
  local f = io.open(self.out, "r")
  if not f then return list end
  for line in f:lines() do
    local t, path, status, first = line:match("^(%S+) (%S+) (%d+) (%S+)$")
    if t then
      list[#list + 1] = { t = tonumber(t), path = path, status = tonumber(status), first = first }
    end
  end
  f:close()
  return list
end

-- Stops the loop; returns every answer it got.
function Client:stop()
  S.sh("kill -TERM " .. self.pid)
  S.eventually(function() return not select(2, S.sh("kill -0 " .. self.pid)) end, 10,
    "client exits")
  local a = self:answers()
  os.remove(self.out)
  return a
end

-- Counts of answers by "<status> <first line>", and a printable summary.
function D.tally(answers, path)
  local n, keys = {}, {}
  for _, a in ipairs(answers) do
    if not path or a.path == path then
      local k = a.status .. " " .. a.first
      if not n[k] then keys[#keys + 1] = k end
      n[k] = (n[k] or 0) + 1
    end
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. " x" .. n[k] end
  return n, table.concat(parts, ", ")
end

-- Fails unless every answer is a 200 from the pod its path names and each
-- of `names` got at least `min_each` of them; `during` names the window in
-- the message. Returns the tally's summary.
function D.assert_all_own(answers, names, min_each, during)
  local n, tally = D.tally(answers)
  for _, name in ipairs(names) do
    assert((n["200 " .. name] or 0) >= min_each, "enough answers for " .. name .. ": " .. tally)
  end
  for _, a in ipairs(answers) do
    assert(a.status == 200, string.format("%d %s during %s (%d answers): %s", a.status,
      a.path, during, #answers, tally))
    assert(a.path:match("^/([^/]+)/") == a.first, string.format("%s answered by %s during %s: %s",
      a.path, a.first, during, tally))
  end
  return tally
end

-- The answers to `path` in order, with runs of the same answer collapsed:
-- { "200 p1", "503 no_healthy_upstream", "404 -" }.
function D.sequence(answers, path)
  local seq = {}
  for _, a in ipairs(answers) do
    if a.path == path then
      local k = a.status .. " " .. a.first
      if seq[#seq] ~= k then seq[#seq + 1] = k end
    end
  end
  return seq
end

-- "/<name>/" for each pod name of a list.
function D.paths(names)
  local p = {}
  for i, n in ipairs(names) do p[i] = "/" .. n .. "/" end
  return p
end

-- A spec's teardown: stops its operator (if any) and pod stand-ins, then
-- removes its namespace.
function D.teardown(ns, op, stand_ins)
  if op then op:stop() end
  for _, p in ipairs(stand_ins or {}) do p:stop() end
  S.cleanup(ns)
end

-- The operator for a data-plane namespace: routes to `gw`, pods on D.pod_port.
function D.operator(ns, gw, extra)
  local args = { "--watch-namespace", ns, "--gateway-name", gw.name,
                 "--pod-port", tostring(D.pod_port) }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local op = S.operator(args)
  record(op.pid)
  op:wait_ready()
  return op
end

return D
