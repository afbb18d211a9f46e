-- End-to-end: a pod deleted and created again under the same name, the way
-- JupyterHub restarts `jupyter-<user>`. Deletion is graceful, so the old
-- pod's children are still there (the garbage collector has not removed
-- them yet) when the new pod is reconciled; sometimes the operator is
-- restarted in between. The children must move to the new pod cleanly: no
-- 422 from the API server, no Event, and once the new pod is reconciled its
-- EndpointSlice never holds the old address.

local S = require("spec.e2e.support")

local ROUNDS = 20

-- The garbage collector (kube-controller-manager of this cluster) removes
-- the old pod's children within milliseconds here; in a loaded cluster it
-- lags. Pausing it (SIGSTOP, then SIGCONT) for a round stands in for that
-- lag, so the old children are really still there when the new pod is
-- reconciled.
local function gc_pid()
  local dir = S.kubeconfig():match("^(.*)/[^/]+$")
  local f = assert(io.open(dir .. "/pids/kube-controller-manager.pid"))
  local pid = f:read("l")
  f:close()
  return pid
end
local function gc_pause(on)
  S.sh("kill -" .. (on and "STOP" or "CONT") .. " " .. gc_pid())
end

-- The uid of an object's controller, or nil.
local function controller_uid(o)
  for _, ref in ipairs(o and o.metadata.ownerReferences or {}) do
    if ref.controller then return ref.uid end
  end
  return nil
end

-- Warnings the operator wrote in `ns` (Events of its component).
local function events(ns)
  local n = 0
  for _, e in ipairs(S.list(ns, "events")) do
    if e.reportingComponent == "envoy-router" or (e.source and e.source.component == "envoy-router") then
      n = n + 1
    end
  end
  return n
end

describe("a pod recreated under the same name", function()
  local ns, op, logs = nil, nil, {}

  local function start()
    op = S.operator({ "--watch-namespace", ns })
    logs[#logs + 1] = op
    op:wait_ready()
  end

  lazy_setup(function()
    ns = S.namespace("e2e-recreate")
    S.pod(ns, "nb")
    S.pod_status(ns, "nb", { ip = "10.82.0.1", ready = true })
    start()
    S.eventually(function()
      local es = S.get(ns, "endpointslice", "nb")
      return es and es.endpoints[1].addresses[1] == "10.82.0.1"
    end, 10, "first children")
  end)
  lazy_teardown(function()
    gc_pause(false)
    if op then op:stop() end
    S.cleanup(ns)
  end)

  it(ROUNDS .. " times: no 422, no Event, never the old address once reconciled", function()
    local stale, restarts = 0, 0
    for round = 1, ROUNDS do
      local old_ip = S.get(ns, "endpointslice", "nb").endpoints[1].addresses[1]
      local ip = string.format("10.82.%d.%d", round, round % 200 + 10)
      -- Round kinds: every fifth round the operator is down while the pod
      -- is replaced (it starts to find the old children and the new pod);
      -- every other round it is frozen (SIGSTOP) for the replacement, which
      -- then reaches it as one burst of events: the pod's key is reconciled
      -- once, with the new pod and the old children (the garbage collector
      -- has not removed them yet). Otherwise it watches the two steps.
      local restart, freeze = round % 5 == 0, round % 2 == 1
      if restart or freeze then gc_pause(true) end
      if restart then
        assert.is_true(op:stop())
        restarts = restarts + 1
      elseif freeze then
        S.sh("kill -STOP " .. op.pid)
      end
      local pod
      if freeze and not restart then
        local base = "/api/v1/namespaces/" .. ns .. "/pods"
        local codes = S.api_many({
          { method = "DELETE", path = base .. "/nb" },          -- graceful: default period
          { method = "POST", path = base, body = {
            apiVersion = "v1", kind = "Pod",
            metadata = { name = "nb", namespace = ns, labels = { ["envoy-router/enabled"] = "true" } },
            spec = { containers = { { name = "app", image = "example.invalid/app:1" } } } } },
          { method = "PATCH", path = base .. "/nb/status", body = S.status_body({ ip = ip, ready = true }),
            content_type = "application/merge-patch+json" },
        })
        S.sh("kill -CONT " .. op.pid)
        assert.same({ 200, 201, 200 }, codes)
        pod = S.get(ns, "pod", "nb")
      else
        S.must("delete pod nb -n " .. ns .. " --wait=true")   -- graceful: no --force
        pod = S.pod(ns, "nb")
        S.pod_status(ns, "nb", { ip = ip, ready = true })
      end
      if restart then start() end
      local uid = pod.metadata.uid
      -- Reconciled: the EndpointSlice's controller is the new pod. From then
      -- on it must hold the new address and nothing else.
      S.eventually(function()
        local es = S.get(ns, "endpointslice", "nb")
        if es and controller_uid(es) == uid then
          if es.endpoints[1].addresses[1] ~= ip then stale = stale + 1 end
          return es.endpoints[1].addresses[1] == ip
        end
        return false
      end, 15, "round " .. round .. ": the new pod's EndpointSlice with " .. ip .. " (old " .. old_ip
        .. "); log " .. op.log)
      gc_pause(false)
      S.never(function()
        local es = S.get(ns, "endpointslice", "nb")
        return es == nil or es.endpoints[1].addresses[1] ~= ip
      end, 0.3, "round " .. round .. ": the EndpointSlice lost the new address")
      -- The Service and the route follow: re-owned in place, or (when the
      -- garbage collector had already started deleting the old pod's
      -- Service in the foreground: a pod with no node goes at once, like a
      -- forced deletion) created afresh once the old one is gone, the route
      -- only after its Service. One controller each, the new pod.
      for _, kind in ipairs({ "service", "httproute" }) do
        S.eventually(function()
          local o = S.get(ns, kind, "nb")
          if not o or o.metadata.deletionTimestamp then return false end
          local controllers = {}
          for _, ref in ipairs(o.metadata.ownerReferences or {}) do
            if ref.controller then controllers[#controllers + 1] = ref.uid end
          end
          return #controllers == 1 and controllers[1] == uid
        end, 15, kind .. " of round " .. round .. " with the new pod as its one controller")
      end
    end
    for _, o in ipairs(logs) do print("# operator log " .. o.log) end
    assert.equal(0, stale, "EndpointSlices seen with the new pod as controller and an old address")
    assert.equal(ROUNDS // 5, restarts)
    for _, o in ipairs(logs) do
      local text = o:log_text()
      for _, pat in ipairs({ "status=422", '"status":"422"', "HTTP 422" }) do
        assert.is_nil(text:find(pat, 1, true), "a 422 in " .. o.log)
      end
      assert.is_nil(text:find("ChildRejected", 1, true), "a rejected child in " .. o.log)
      assert.is_nil(text:find("NameConflict", 1, true), "a conflict in " .. o.log)
    end
    assert.equal(0, events(ns))
  end)

  -- A Service the garbage collector has started deleting in the foreground
  -- (as it does when a pod goes without draining) waits for the collector,
  -- which in a big cluster can be minutes behind (kube-controller-manager's
  -- client: 20 requests/s). The operator finishes such a deletion itself
  -- (DELETE, Background policy) and creates the Service afresh, without the
  -- collector: here it is stopped throughout.
  it("a Service left in foreground deletion is finished and made again without the collector",
    function()
      local es0 = S.get(ns, "endpointslice", "nb")
      local ip = es0.endpoints[1].addresses[1]
      local old = S.get(ns, "service", "nb")
      gc_pause(true)
      S.must("delete service nb -n " .. ns .. " --cascade=foreground --wait=false")
      local svc = S.eventually(function()
        local o = S.get(ns, "service", "nb")
        return o and o.metadata.uid ~= old.metadata.uid and not o.metadata.deletionTimestamp and o
      end, 15, "a new Service while the collector is stopped; log " .. op.log)
      assert.same({ "foregroundDeletion" }, svc.metadata.finalizers)
      S.eventually(function()
        local rt = S.get(ns, "httproute", "nb")
        for _, ref in ipairs(rt and rt.metadata.ownerReferences or {}) do
          if ref.kind == "Service" and ref.uid == svc.metadata.uid then return true end
        end
        return false
      end, 15, "the route names the new Service")
      assert.equal(ip, S.get(ns, "endpointslice", "nb").endpoints[1].addresses[1])
      gc_pause(false)
    end)
end)
