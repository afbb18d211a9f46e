-- End-to-end: problems reach the pod's owner as Kubernetes Events (what
-- `kubectl describe pod` shows): a name taken by someone else's object, a
-- script that fails. A problem that keeps coming back is one Event whose
-- count rises (updated at most once a minute), not a pile of Events.

local S = require("spec.e2e.support")

-- Events about `pod` written by the operator with identity `instance`
-- (other suites may run an operator over all namespaces meanwhile).
local function events_of(ns, pod, reason, instance)
  local out = {}
  for _, e in ipairs(S.list(ns, "events")) do
    if e.involvedObject.name == pod and (reason == nil or e.reason == reason)
        and e.reportingInstance == instance then
      out[#out + 1] = e
    end
  end
  return out
end

local function tmpdir()
  return (S.sh("mktemp -d"):gsub("%s+$", ""))
end

describe("Events on the pod", function()
  local ns, ns_script, op, op_script, dir
  local conflict_seen_at

  lazy_setup(function()
    ns = S.namespace("e2e-events")
    ns_script = S.namespace("e2e-events-script")
    op = S.operator({ "--watch-namespace", ns, "--identity", "events-e2e" })
    op:wait_ready()
  end)
  lazy_teardown(function()
    if op then op:stop() end
    if op_script then op_script:stop() end
    if dir then S.sh("rm -rf " .. S.quote(dir)) end
    S.cleanup(ns)
    S.cleanup(ns_script)
  end)

  it("a user's Service with the pod's name: a NameConflict Warning on the pod", function()
    S.apply({ apiVersion = "v1", kind = "Service",
              metadata = { name = "taken", namespace = ns, labels = { owner = "user" } },
              spec = { ports = { { port = 80 } } } })
    local pod = S.pod(ns, "taken")
    S.pod_status(ns, "taken", { ip = "10.70.0.1", ready = true })
    local e = S.eventually(function() return events_of(ns, "taken", "NameConflict", "events-e2e")[1] end, 10,
      "a NameConflict Event")
    conflict_seen_at = S.now()
    assert.equal("Warning", e.type)
    assert.equal("Pod", e.involvedObject.kind)
    assert.equal(pod.metadata.uid, e.involvedObject.uid)
    assert.equal(ns, e.involvedObject.namespace)
    assert.equal("envoy-router", e.source.component)
    assert.equal("envoy-router", e.reportingComponent)
    assert.equal("events-e2e", e.reportingInstance)
    assert.equal(1, e.count)
    assert.truthy(e.message:find("Service " .. ns .. "/taken", 1, true), e.message)
    assert.truthy(e.firstTimestamp)
    assert.truthy(e.lastTimestamp)
    -- The log line stays too, and the user's Service is left as it was.
    assert.truthy(op:log_text():find("reason=NameConflict", 1, true))
    local svc = S.get(ns, "service", "taken")
    assert.same({ owner = "user" }, svc.metadata.labels)
  end)

  it("a script that fails in children(): a ScriptError Warning on the pod", function()
    dir = tmpdir()
    local f = assert(io.open(dir .. "/router.lua", "w"))
    f:write([[
return {
  selector = "envoy-router/enabled=true",
  children = function(pod, config)
    error("broken on purpose for " .. pod.metadata.name)
  end,
}
]])
    f:close()
    op_script = S.operator({ "--watch-namespace", ns_script, "--scripts-dir", dir,
      "--identity", "script-e2e" })
    op_script:wait_ready()
    S.pod(ns_script, "victim")
    S.pod_status(ns_script, "victim", { ip = "10.70.1.1", ready = true })
    local e = S.eventually(function() return events_of(ns_script, "victim", "ScriptError", "script-e2e")[1] end,
      10, "a ScriptError Event")
    assert.equal("Warning", e.type)
    assert.truthy(e.message:find("broken on purpose for victim", 1, true), e.message)
    assert.equal(S.get(ns_script, "pod", "victim").metadata.uid, e.involvedObject.uid)
    assert.is_true(op_script:metric("envoy_router_script_errors_total") >= 1)
    -- Nothing was written for the pod but the Event.
    assert.same({}, S.children_of(ns_script, "victim"))
  end)

  it("the conflict keeps coming back: one Event, its count rises", function()
    -- The pod is retried with backoff; the Event is updated at most once a
    -- minute after it was created.
    local e = S.eventually(function()
      local list = events_of(ns, "taken", "NameConflict", "events-e2e")
      assert(#list == 1, "expected one NameConflict Event, found " .. #list)
      return list[1].count > 1 and list[1]
    end, 80, "the count of the NameConflict Event rises")
    local waited = S.now() - conflict_seen_at
    print(string.format("# the count rose to %d after %.0f s", e.count, waited))
    assert.is_true(waited > 50, "updated sooner than a minute after the create")
    assert.is_true(op:metric("envoy_router_events_total", { result = "updated" }) >= 1)
    assert.equal(1, #events_of(ns, "taken", "NameConflict", "events-e2e"))
    assert.equal(0, op:metric("envoy_router_events_dropped_total"))
  end)
end)
