-- End-to-end: the Lease has a slot of its own. The operator talks to the
-- real API server through spec/e2e/slowproxy.py, which holds every write
-- (a request other than GET, not on a Lease) DELAY seconds before passing it
-- on. With 40 new pods, all --max-concurrent-writes (16) slots are taken by
-- writes that take longer than the renew deadline (10 s); the leader must
-- renew anyway and keep leading. Then a leader that loses the Lease while
-- its Events are held there must cancel them (none may land later).
local S = require("spec.e2e.support")

local LEASE = "envoy-router-slot"
local DELAY = 12
local root = os.getenv("ENVOY_ROUTER_ROOT") or "."

describe("the Lease slot", function()
  local ns, ns2, dir, proxy_pid, op

  setup(function()
    ns = S.namespace("e2e-lease-slot")
    dir = S.sh("mktemp -d"):gsub("%s+$", "")
    local q = S.quote(dir)
    local _, ok = S.sh(string.format("openssl req -x509 -newkey rsa:2048 -nodes -days 1 "
      .. "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem "
      .. "-out %s/cert.pem 2>/dev/null", q, q))
    assert(ok, "openssl: a certificate for the proxy")
    local api = S.api_base()
    local upstream = assert(api.server:match(":(%d+)$"), "API server port")
    proxy_pid = tonumber(S.sh(string.format("(python3 %s %s %s/cert.pem %s/key.pem %d "
      .. ">%s/proxy.out 2>&1 & echo $!)", S.quote(root .. "/spec/e2e/slowproxy.py"), upstream, q,
      q, DELAY, q)):match("%d+"))
    local port = S.eventually(function()
      local f = io.open(dir .. "/proxy.out")
      local text = f and f:read("a") or ""
      if f then f:close() end
      return text:match("port (%d+)")
    end, 10, "slowproxy listening")
    local f = assert(io.open(dir .. "/kubeconfig", "w"))
    f:write(string.format([[
apiVersion: v1
kind: Config
current-context: slow
clusters:
- name: slow
  cluster:
    server: https://127.0.0.1:%s
    certificate-authority: %s/cert.pem
users:
- name: admin
  user:
    token: %s
contexts:
- name: slow
  context: {cluster: slow, user: admin}
]], port, dir, api.token))
    f:close()
    local names, statuses = {}, {}
    for i = 1, 40 do
      names[i] = string.format("sl-%02d", i)
      statuses[names[i]] = { ip = string.format("10.32.0.%d", i), ready = true }
    end
    S.pods(ns, names)
    S.pods_status(ns, statuses)
  end)

  -- An operator through the proxy, watching `namespace`, once it leads
  -- through Lease `lease` (in the same namespace).
  local function leader(namespace, lease, identity)
    local o = S.operator({ "--kubeconfig", dir .. "/kubeconfig", "--watch-namespace", namespace,
      "--leader-elect", "--leader-election-id", lease, "--leader-election-namespace", namespace,
      "--identity", identity })
    S.eventually(function()
      return o:metric("leader_election_master_status", { name = lease }) == 1
    end, 30, identity .. " leads; log: " .. o.log)
    return o
  end

  teardown(function()
    if op then op:stop("KILL") end
    if proxy_pid then S.sh("kill " .. proxy_pid) end
    if dir then S.sh("rm -rf " .. S.quote(dir)) end
    if ns then S.cleanup(ns) end
    if ns2 then S.cleanup(ns2) end
  end)

  it("keeps leading while every write slot holds a write slower than the renew deadline",
    function()
    op = leader(ns, LEASE, "slot-a")
    local t0 = S.now()
    -- Held by the proxy: nothing is written for DELAY seconds (the Lease's
    -- own writes, which the proxy lets through, count in op:writes()).
    local function services()
      return #S.list(ns, "services", "app.kubernetes.io/managed-by=envoy-router")
    end
    S.sleep(DELAY - 4)
    assert.equal(0, services(), "Services written before the proxy's delay")
    local renewals, last = 0, nil
    local lost = false
    while S.now() - t0 < 2.5 * DELAY do
      if op:metric("leader_election_master_status", { name = LEASE }) ~= 1 then lost = true end
      local l = S.get(ns, "lease", LEASE)
      local renew = l and l.spec.renewTime
      if renew and renew ~= last then
        renewals = renewals + 1
        last = renew
      end
      S.sleep(1)
    end
    local writes = services()
    print(string.format("# Lease slot: writes held %d s by the proxy; over %.0f s the Lease was "
      .. "seen renewed %d times, %d Services written, leadership lost: %s", DELAY, 2.5 * DELAY,
      renewals, writes, tostring(lost)))
    assert.is_false(lost, "the leader stepped down; log: " .. op.log)
    assert.is_nil(op:log_text():find("leader: stepped down", 1, true))
    assert.is_true(renewals >= 5, "the Lease was renewed " .. renewals .. " times")
    assert.equal("slot-a", S.get(ns, "lease", LEASE).spec.holderIdentity)
    assert.is_true(writes >= 16, "Services written in the end: " .. writes)
  end)

  -- Events are writes too: the ones a leader has queued or in flight when
  -- it loses the Lease must not land after the new holder took over.
  it("drops the Events in flight when the Lease is taken away", function()
    if op then op:stop("KILL") end
    -- A namespace of its own: the first case's pods would hold the write
    -- slots for minutes.
    ns2 = S.namespace("e2e-lease-slot-ev")
    local lease2 = LEASE .. "-ev"
    for i = 1, 3 do
      S.apply({ apiVersion = "v1", kind = "Service",
                metadata = { name = "ev-" .. i, namespace = ns2, labels = { owner = "user" } },
                spec = { ports = { { port = 80 } } } })
      S.pod(ns2, "ev-" .. i)
      S.pod_status(ns2, "ev-" .. i, { ip = "10.32.1." .. i, ready = true })
    end
    op = leader(ns2, lease2, "ev-a")
    -- The creates meet the user's Services (409, after the proxy's delay),
    -- then the conflicts are reported and their Events sent (held).
    S.eventually(function()
      local _, n = op:log_text():gsub("reason=NameConflict", "")
      return n >= 3
    end, DELAY + 20, "three NameConflicts reported")
    -- All three Event POSTs held by the proxy, in flight (one that is
    -- still queued in the operator when the Lease goes never reaches it).
    local function proxy_out()
      local f = io.open(dir .. "/proxy.out")
      local text = f and f:read("a") or ""
      if f then f:close() end
      return text
    end
    S.eventually(function()
      local _, n = proxy_out():gsub("held POST [^\n]*/events", "")
      return n >= 3
    end, 20, "three Event POSTs held by the proxy")
    local sent = S.now()
    S.sleep(1)
    -- Another holder takes the Lease (for two minutes): ev-a's next renewal
    -- finds it taken and steps down.
    local now = os.date("!%Y-%m-%dT%H:%M:%S.000000Z")
    local code = S.api("PATCH", "/apis/coordination.k8s.io/v1/namespaces/" .. ns2 .. "/leases/"
      .. lease2, { spec = { holderIdentity = "thief", renewTime = now, acquireTime = now,
      leaseDurationSeconds = 120 } }, "application/merge-patch+json")
    assert.equal(200, code)
    S.eventually(function()
      return op:metric("leader_election_master_status", { name = lease2 }) == 0
    end, 15, "ev-a stepped down")
    -- Past the time the held Events would have been passed on.
    S.sleep(math.max(0, DELAY + 3 - (S.now() - sent)))
    local landed = 0
    for _, e in ipairs(S.list(ns2, "events")) do
      if e.reportingInstance == "ev-a" then landed = landed + 1 end
    end
    local _, dropped = proxy_out():gsub("dropped POST [^\n]*/events", "")
    local cancelled = op:log_text():match("writes in flight cancelled[^\n]*events_cancelled=(%d+)")
    print(string.format("# step-down: Events cancelled at step-down %s, dropped by the proxy %d, "
      .. "landed %d", tostring(cancelled), dropped, landed))
    assert.equal(0, landed, "Events of the old leader landed after it lost the Lease")
    assert.is_true(dropped >= 3, "the proxy saw " .. dropped .. " Event POSTs cancelled")
  end)
end)
