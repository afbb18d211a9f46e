-- What a client sees through real Envoy Gateway and Envoy, through every
-- change in a pod's life. The Gateway, EnvoyProxy and BackendTrafficPolicy
-- come from the chart (helm template), applied before any pod exists.

local D = require("spec.dataplane.support")
local S = D.S

local ns = "dp-traffic"

describe("traffic through Envoy", function()
  local gw, op
  local stand_ins = {}

  -- Pod `name` with its stand-in answering on `ip`, ready unless told.
  -- node: bound to a node, so that deleting it is graceful (the API server
  -- removes an unscheduled pod at once).
  local function pod(name, ip, ready, node)
    stand_ins[#stand_ins + 1] = D.pods({ [name] = ip })
    S.pod(ns, name, { node = node })
    S.pod_status(ns, name, { ip = ip, ready = ready ~= false })
    return stand_ins[#stand_ins]
  end

  lazy_setup(function()
    D.up()
    S.namespace(ns)
    gw = D.gateway("envoy-router", ns)
    op = D.operator(ns, gw)
  end)

  lazy_teardown(function() D.teardown(ns, op, stand_ins) end)

  it("a new pod answers with its own name at /<pod>/, /<pod> and /<pod>/x; "
    .. "/<pod>-other/ does not reach it", function()
    pod("web-1", "10.244.7.1")
    D.wait_answer(gw.port, "/web-1/", 200, "web-1", 30)
    for _, path in ipairs({ "/web-1", "/web-1/x", "/web-1/" }) do
      local code, body = D.get(gw.port, path)
      assert.are.equal(200, code, path)
      assert.are.equal("web-1", body:match("^[^\n]*"), path)
      assert.are.equal(path, body:match("^[^\n]*\n([^\n]*)"), "the pod sees the path as sent")
    end
    local code, body = D.get(gw.port, "/web-1-other/")
    assert.are.equal(404, code)
    assert.is_nil(body:find("web-1", 1, true))
  end)

  it("not ready answers 503; ready again answers 200", function()
    pod("ready-1", "10.244.7.2")
    D.wait_answer(gw.port, "/ready-1/", 200, "ready-1", 30)
    local c = D.client(gw.port, { "/ready-1/" })
    S.pod_status(ns, "ready-1", { ip = "10.244.7.2", ready = false })
    D.wait_answer(gw.port, "/ready-1/", 503, nil, 10)
    S.sleep(1)
    S.pod_status(ns, "ready-1", { ip = "10.244.7.2", ready = true })
    D.wait_answer(gw.port, "/ready-1/", 200, "ready-1", 10)
    S.sleep(0.5)
    local seq = D.sequence(c:stop(), "/ready-1/")
    assert.are.equal("200 ready-1", seq[1])
    assert.are.equal("200 ready-1", seq[#seq])
    for _, k in ipairs(seq) do
      assert.is_truthy(k == "200 ready-1" or k:match("^503 "), table.concat(seq, " -> "))
    end
    assert.is_truthy(#seq >= 3, "a 503 between the 200s: " .. table.concat(seq, " -> "))
  end)

  it("a changed IP: the new address answers, the old one never again", function()
    local old = pod("move-1", "10.244.7.3")
    D.wait_answer(gw.port, "/move-1/", 200, "move-1", 30)
    -- The same name on a new address answers "move-1@new" so the two differ.
    stand_ins[#stand_ins + 1] = D.pods({ ["move-1@new"] = "10.244.7.4" })
    local c = D.client(gw.port, { "/move-1/" })
    S.sleep(0.3)
    S.pod_status(ns, "move-1", { ip = "10.244.7.4", ready = true })
    D.wait_answer(gw.port, "/move-1/", 200, "move-1@new", 10)
    local switched = S.now()
    S.sleep(1.5)
    local answers = c:stop()
    old:stop()
    local seq = D.sequence(answers, "/move-1/")
    assert.are.equal("200 move-1@new", seq[#seq], table.concat(seq, " -> "))
    -- After the first answer from the new address, nothing from the old one.
    local seen_new = false
    for _, a in ipairs(answers) do
      if a.first == "move-1@new" then seen_new = true end
      if seen_new then assert.are_not.equal("move-1", a.first) end
    end
    assert.is_truthy(switched > 0)
  end)

  it("terminating: the request in flight completes, new ones get 503, then 404 once gone; "
    .. "never 500", function()
    local p = pod("term-1", "10.244.7.5", true, "node-1")
    D.wait_answer(gw.port, "/term-1/", 200, "term-1", 30)
    local c = D.client(gw.port, { "/term-1/" })
    -- A slow request in flight while the pod starts terminating.
    local slow = os.tmpname()
    S.sh(string.format("(curl -s --max-time 20 -w '\\n%%{http_code}' "
      .. "http://127.0.0.1:%d/term-1/__slow/3 >%s 2>&1 &)", gw.port, slow))
    S.sleep(0.5)
    S.must("delete pod term-1 -n " .. ns .. " --grace-period=30 --wait=false")
    assert.is_truthy(S.get(ns, "pod", "term-1").metadata.deletionTimestamp, "terminating")
    D.wait_answer(gw.port, "/term-1/", 503, nil, 10)
    -- The kubelet would stop the container after the in-flight request; the
    -- pod object goes once its containers are gone.
    S.eventually(function()
      local f = io.open(slow)
      local s = f and f:read("a") or ""
      if f then f:close() end
      return s:match("\n(%d+)$")
    end, 10, "slow request done")
    local f = io.open(slow)
    local s = f:read("a")
    f:close()
    os.remove(slow)
    assert.are.equal("200", s:match("\n(%d+)$"), "in-flight request: " .. s)
    assert.are.equal("term-1", s:match("^[^\n]*"))
    p:stop()
    S.must("delete pod term-1 -n " .. ns .. " --grace-period=0 --force")
    D.wait_answer(gw.port, "/term-1/", 404, nil, 10)
    S.sleep(0.5)
    local answers = c:stop()
    local seq = D.sequence(answers, "/term-1/")
    local tally = select(2, D.tally(answers))
    assert.are.equal("200 term-1", seq[1], tally)
    assert.are.equal("404", seq[#seq]:match("^%d+"), tally)
    for _, a in ipairs(answers) do
      assert.are_not.equal(500, a.status, "a 500 seen: " .. tally .. "; in order: "
        .. table.concat(seq, " -> "))
      assert.are_not.equal(0, a.status, "no answer seen: " .. tally)
    end
    local saw503 = false
    for _, k in ipairs(seq) do if k:match("^503") then saw503 = true end end
    assert.is_true(saw503, table.concat(seq, " -> "))
  end)

  -- The same path, three pods at a time, three rounds: Envoy Gateway's
  -- informers are not ordered across kinds, so a Service deleted only ms
  -- after its route answered 500 about one time in six; the operator's
  -- drain delay (--route-drain-delay) is what keeps it away.
  it("terminating, three pods at a time for three rounds: never 500", function()
    for round = 1, 3 do
      local names, map, paths = {}, {}, {}
      for i = 1, 3 do
        names[i] = string.format("drain-%d-%d", round, i)
        map[names[i]] = string.format("10.244.9.%d", round * 10 + i)
        paths[i] = "/" .. names[i] .. "/"
      end
      local p = D.pods(map)
      stand_ins[#stand_ins + 1] = p
      S.pods(ns, names, { node = "node-1" })
      S.pods_status(ns, (function()
        local st = {}
        for n, ip in pairs(map) do st[n] = { ip = ip, ready = true } end
        return st
      end)())
      for _, n in ipairs(names) do D.wait_answer(gw.port, "/" .. n .. "/", 200, n, 30) end
      local c = D.client(gw.port, paths)
      S.sleep(0.3)
      local all = table.concat(names, " ")
      S.must("delete pod " .. all .. " -n " .. ns .. " --grace-period=30 --wait=false")
      for _, n in ipairs(names) do D.wait_answer(gw.port, "/" .. n .. "/", 503, nil, 10) end
      p:stop()
      S.must("delete pod " .. all .. " -n " .. ns .. " --grace-period=0 --force")
      for _, n in ipairs(names) do D.wait_answer(gw.port, "/" .. n .. "/", 404, nil, 10) end
      S.sleep(0.5)
      local answers = c:stop()
      local tally = select(2, D.tally(answers))
      for _, a in ipairs(answers) do
        assert.are_not.equal(500, a.status, "round " .. round .. ": a 500 seen on " .. a.path
          .. ": " .. tally .. "; in order: " .. table.concat(D.sequence(answers, a.path), " -> "))
        assert.are_not.equal(0, a.status, "no answer seen: " .. tally)
      end
    end
  end)

  it("the same name deleted and created again: the new pod answers, the old address never",
  function()
    local old = pod("nb-1", "10.244.7.6")
    D.wait_answer(gw.port, "/nb-1/", 200, "nb-1", 30)
    S.must("delete pod nb-1 -n " .. ns .. " --grace-period=0 --force")
    stand_ins[#stand_ins + 1] = D.pods({ ["nb-1@new"] = "10.244.7.7" })
    S.pod(ns, "nb-1")
    local c = D.client(gw.port, { "/nb-1/" })
    S.pod_status(ns, "nb-1", { ip = "10.244.7.7", ready = true })
    D.wait_answer(gw.port, "/nb-1/", 200, "nb-1@new", 15)
    S.sleep(1)
    local answers = c:stop()
    old:stop()
    for _, a in ipairs(answers) do
      assert.are_not.equal("nb-1", a.first,
        "the old address answered: " .. select(2, D.tally(answers)))
      assert.are_not.equal(500, a.status, select(2, D.tally(answers)))
    end
  end)

  describe("with 20 ready pods under a client loop", function()
    local names = {}

    lazy_setup(function()
      local map = {}
      for i = 1, 20 do
        names[i] = string.format("load-%02d", i)
        map[names[i]] = string.format("10.244.8.%d", i)
      end
      stand_ins[#stand_ins + 1] = D.pods(map)
      S.pods(ns, names)
      S.pods_status(ns, (function()
        local st = {}
        for n, ip in pairs(map) do st[n] = { ip = ip, ready = true } end
        return st
      end)())
      for _, n in ipairs(names) do D.wait_answer(gw.port, "/" .. n .. "/", 200, n, 30) end
    end)

    local function paths() return D.paths(names) end

    local function assert_all_200(answers)
      local _, tally = D.tally(answers)
      assert.is_truthy(#answers > 40, "enough requests: " .. tally)
      for _, a in ipairs(answers) do
        assert.are.equal(200, a.status, tally)
        assert.are.equal(a.path:match("^/([^/]+)/"), a.first, tally)
      end
    end

    it("the operator restarted: zero non-200 answers", function()
      local c = D.client(gw.port, paths())
      S.sleep(1)
      assert.is_true(op:stop("TERM"))
      S.sleep(1)
      op = D.operator(ns, gw)
      S.sleep(2)
      assert_all_200(c:stop())
    end)

    it("the operator SIGKILLed: zero non-200 answers", function()
      local c = D.client(gw.port, paths())
      S.sleep(1)
      op:stop("KILL")
      S.sleep(1)
      op = D.operator(ns, gw)
      S.sleep(2)
      assert_all_200(c:stop())
    end)

    it("Envoy Gateway restarted: every route answers again", function()
      D.restart_eg()
      -- A pod created after the restart reaches Envoy through the new instance.
      pod("after-eg", "10.244.7.8")
      D.wait_answer(gw.port, "/after-eg/", 200, "after-eg", 30)
      for _, n in ipairs(names) do D.wait_answer(gw.port, "/" .. n .. "/", 200, n, 10) end
    end)
  end)

  describe("route options", function()
    it("--rewrite-prefix: the pod sees / for /<pod>/", function()
      op:stop()
      op = D.operator(ns, gw, { "--rewrite-prefix" })
      pod("rw-1", "10.244.7.9")
      S.eventually(function()
        local code, body = D.get(gw.port, "/rw-1/x/y")
        return code == 200 and body:match("^[^\n]*\n([^\n]*)") == "/x/y"
      end, 30, "rw-1 sees /x/y")
      local code, body = D.get(gw.port, "/rw-1/")
      assert.are.equal(200, code)
      assert.are.equal("/", body:match("^[^\n]*\n([^\n]*)"))
    end)

    it("--hostname: only that Host header routes", function()
      op:stop()
      op = D.operator(ns, gw, { "--hostname", "pods.example.test" })
      pod("host-1", "10.244.7.10")
      D.wait_answer(gw.port, "/host-1/", 200, "host-1", 30, "pods.example.test")
      local code = D.get(gw.port, "/host-1/", "other.example.test")
      assert.are.equal(404, code)
      code = D.get(gw.port, "/host-1/")
      assert.are.equal(404, code)
      op:stop()
      op = D.operator(ns, gw)
    end)
  end)
end)
