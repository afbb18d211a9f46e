-- Pods deleted by force (no terminating phase the operator could drain
-- through), with the operator running and with no operator at all: the
-- garbage collector deletes the children, and a client must never see a 500
-- (Envoy Gateway's answer for a route whose Service is already gone).
--
-- What keeps the order (host/core.lua, "Deletion order"): a pod's HTTPRoute
-- names its Service as a blocking owner and the Service carries the
-- collector's finalizer foregroundDeletion, so the collector deletes the
-- Service only once the route is gone (the EndpointSlice, owned by the pod
-- alone, may go first: 503, no endpoints). With the Service owned by the pod
-- alone the same rounds gave a 500 for 9 of 72 pods deleted so
-- (bench/RESULTS.md, converge3).

local D = require("spec.dataplane.support")
local S = D.S

local ns = "dp-force"

describe("pods deleted by force", function()
  local gw, op
  local stand_ins = {}

  lazy_setup(function()
    D.up()
    S.namespace(ns)
    gw = D.gateway("envoy-router", ns, { "--set", "gateway.port=86" })
  end)

  lazy_teardown(function() D.teardown(ns, op, stand_ins) end)

  -- Three rounds of three pods: ready and answering, then deleted with
  -- --grace-period=0 --force under a client loop (the operator stopped
  -- first when `running` is false) until every path answers 404.
  local function rounds(tag, running, base)
    local answers_seen, bad, by_status = 0, {}, {}
    for round = 1, 3 do
      if not op then op = D.operator(ns, gw) end
      local names, map, paths = {}, {}, {}
      for i = 1, 3 do
        names[i] = string.format("%s-%d-%d", tag, round, i)
        map[names[i]] = string.format("10.244.12.%d", base + round * 10 + i)
        paths[i] = "/" .. names[i] .. "/"
      end
      local p = D.pods(map)
      stand_ins[#stand_ins + 1] = p
      S.pods(ns, names)
      local st = {}
      for n, ip in pairs(map) do st[n] = { ip = ip, ready = true } end
      S.pods_status(ns, st)
      for _, n in ipairs(names) do D.wait_answer(gw.port, "/" .. n .. "/", 200, n, 30) end
      if not running then
        assert.is_true(op:stop("TERM"))
        op = nil
      end
      local c = D.client(gw.port, paths)
      S.sleep(0.3)
      S.must("delete pod " .. table.concat(names, " ") .. " -n " .. ns
        .. " --grace-period=0 --force")
      -- The collector may be slow on a loaded machine: generous.
      for _, n in ipairs(names) do D.wait_answer(gw.port, "/" .. n .. "/", 404, nil, 120) end
      S.sleep(0.5)
      local answers = c:stop()
      p:stop()
      answers_seen = answers_seen + #answers
      for _, a in ipairs(answers) do
        by_status[a.status] = (by_status[a.status] or 0) + 1
        if a.status == 500 or a.status == 0 then
          bad[#bad + 1] = string.format("round %d %s: %d %s", round, a.path, a.status, a.first)
        end
      end
      S.eventually(function()
        for _, n in ipairs(names) do
          if next((S.children_of(ns, n))) ~= nil then return false end
        end
        return true
      end, 120, "the children of " .. table.concat(names, " ") .. " gone")
    end
    local codes = {}
    for status, n in pairs(by_status) do codes[#codes + 1] = string.format("%d x%d", status, n) end
    table.sort(codes)
    print(string.format("# %s: %d answers for 9 pods (%s)", tag, answers_seen,
      table.concat(codes, ", ")))
    assert.is_truthy(answers_seen > 100, "enough answers: " .. answers_seen)
    assert.are.same({}, bad, "500s or failed connections in " .. answers_seen .. " answers")
  end

  it("with the operator running: every path goes from 200 to 404, never 500", function()
    rounds("fo", true, 0)
  end)

  it("with no operator running: the same, by the garbage collector alone", function()
    rounds("fn", false, 100)
  end)
end)
